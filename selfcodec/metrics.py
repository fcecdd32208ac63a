"""Image-quality and rate metrics (numpy only).

Conventions (see docs/design-notes §4, "Evaluation protocol"):

* Images are ``uint8`` arrays of shape ``H x W x 3`` (RGB, 8 bit).  Grayscale
  ``H x W`` arrays are accepted too and treated as one channel.
* :func:`psnr` is PSNR over RGB: one MSE over all ``H*W*3`` subpixels, peak 255.
  Identical images have infinite PSNR; we return the finite cap
  :data:`PSNR_CAP` (100 dB) instead, always, so that averages stay finite.
* :func:`ms_ssim` is the standard 5-scale MS-SSIM (Wang et al. 2003) as in
  ``pytorch_msssim`` / CompressAI: computed on [0, 255] per channel with an
  11x11 Gaussian window (sigma 1.5, "valid" filtering), weights
  (0.0448, 0.2856, 0.3001, 0.2363, 0.1333), 2x2 average pooling between
  scales, then averaged over the channels.
* :func:`bpp` = 8 * bytes / (H * W)   (whole-file bytes, pixels not subpixels).
* :func:`bd_rate` / :func:`bd_psnr`: Bjøntegaard deltas (VCEG-M33), cubic fit.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = [
    "PSNR_CAP",
    "MS_SSIM_WEIGHTS",
    "mse",
    "psnr",
    "ssim",
    "ms_ssim",
    "bpp",
    "bits_per_subpixel",
    "bd_rate",
    "bd_psnr",
]

#: PSNR returned for identical images (instead of ``inf``).
PSNR_CAP = 100.0

#: Standard MS-SSIM scale weights, finest scale first.
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)

_WIN_SIZE = 11
_WIN_SIGMA = 1.5
_K1, _K2 = 0.01, 0.03


def _as_float(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3:
        raise ValueError(f"expected an HxW or HxWxC image, got shape {a.shape}")
    return a.astype(np.float64)


def _check_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = _as_float(a)
    b = _as_float(b)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
    return a, b


def mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared error over all subpixels (uint8 scale)."""
    a, b = _check_pair(a, b)
    return float(np.mean((a - b) ** 2))


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """PSNR in dB over all subpixels (PSNR-RGB for HxWx3 uint8).

    Returns :data:`PSNR_CAP` (100.0) when the images are identical.
    """
    m = mse(a, b)
    if m == 0.0:
        return PSNR_CAP
    return float(min(PSNR_CAP, 10.0 * math.log10(peak * peak / m)))


# ----------------------------------------------------------------------------
# SSIM / MS-SSIM
# ----------------------------------------------------------------------------

def _gauss_1d(size: int, sigma: float) -> np.ndarray:
    coords = np.arange(size, dtype=np.float64) - size // 2
    g = np.exp(-(coords ** 2) / (2.0 * sigma ** 2))
    return g / g.sum()


def _filter_valid(x: np.ndarray, g: np.ndarray, rows: int = 32) -> np.ndarray:
    """Separable 'valid' correlation of x (..., H, W) with g along the last two axes.

    Works in horizontal strips of ``rows`` output rows per map so that the
    temporaries stay in cache (about 2.5x faster than whole-array passes).
    """
    k = g.size
    h, w = x.shape[-2], x.shape[-1]
    oh, ow = h - k + 1, w - k + 1
    g = g.astype(x.dtype)
    flat = x.reshape(-1, h, w)
    out = np.empty((flat.shape[0], oh, ow), dtype=x.dtype)
    for m in range(flat.shape[0]):
        for r0 in range(0, oh, rows):
            r1 = min(oh, r0 + rows)
            n = r1 - r0
            blk = flat[m, r0:r1 + k - 1]
            y = np.multiply(blk[0:n], g[0])
            tmp = np.empty_like(y)
            for i in range(1, k):
                np.multiply(blk[i:i + n], g[i], out=tmp)
                y += tmp
            z = out[m, r0:r1]
            np.multiply(y[:, 0:ow], g[0], out=z)
            tmp = np.empty_like(z)
            for i in range(1, k):
                np.multiply(y[:, i:i + ow], g[i], out=tmp)
                z += tmp
    return out.reshape(x.shape[:-2] + (oh, ow))


def _ssim_cs(x: np.ndarray, y: np.ndarray, g: np.ndarray, data_range: float):
    """Per-channel mean SSIM and mean contrast-structure term.

    x, y: (C, H, W) float.  Filtering runs in float32 for maps above 64K
    pixels (float64 otherwise), on values centred at the channel mean; the
    final maps are evaluated in float64.  Returns two arrays of shape (C,).
    """
    c1 = (_K1 * data_range) ** 2
    c2 = (_K2 * data_range) ** 2
    # second moments about each channel's mean grey level limit cancellation
    off = 0.5 * (x.mean(axis=(-2, -1), keepdims=True) + y.mean(axis=(-2, -1), keepdims=True))
    dt = np.float32 if x.shape[-2] * x.shape[-1] > 65536 else np.float64
    xc = (x - off).astype(dt)
    yc = (y - off).astype(dt)
    stack = np.stack([xc, yc, xc * xc, yc * yc, xc * yc], axis=0)  # (5, C, H, W)
    f = _filter_valid(stack, g).astype(np.float64)
    m1c, m2c, exx, eyy, exy = f
    s11 = exx - m1c * m1c
    s22 = eyy - m2c * m2c
    s12 = exy - m1c * m2c
    mu1, mu2 = m1c + off, m2c + off
    mu1_sq, mu2_sq, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    cs_map = (2.0 * s12 + c2) / (s11 + s22 + c2)
    ssim_map = ((2.0 * mu12 + c1) / (mu1_sq + mu2_sq + c1)) * cs_map
    return ssim_map.mean(axis=(-2, -1)), cs_map.mean(axis=(-2, -1))


def _avg_pool2(x: np.ndarray) -> np.ndarray:
    """2x2/stride-2 average pooling on (C, H, W).

    Matches ``F.avg_pool2d(x, 2, padding=s % 2)`` as used by pytorch_msssim
    (odd sizes are zero-padded by one on both sides, padding counted).
    """
    ph, pw = x.shape[-2] % 2, x.shape[-1] % 2
    if ph or pw:
        x = np.pad(x, ((0, 0), (ph, ph), (pw, pw)))
        oh, ow = (x.shape[-2] - 2) // 2 + 1, (x.shape[-1] - 2) // 2 + 1
        x = x[:, : 2 * oh, : 2 * ow]
    return 0.25 * (x[:, 0::2, 0::2] + x[:, 1::2, 0::2] + x[:, 0::2, 1::2] + x[:, 1::2, 1::2])


def _window_for(min_side: int) -> np.ndarray:
    size = _WIN_SIZE
    if min_side < size:  # tiny image: shrink the window to an odd size that fits
        size = max(1, min_side if min_side % 2 == 1 else min_side - 1)
    return _gauss_1d(size, _WIN_SIGMA)


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """Single-scale SSIM (Gaussian 11x11, sigma 1.5), averaged over channels."""
    x, y = _check_pair(a, b)
    x, y = np.moveaxis(x, -1, 0), np.moveaxis(y, -1, 0)
    g = _window_for(min(x.shape[-2:]))
    s, _ = _ssim_cs(x, y, g, data_range)
    return float(s.mean())


def ms_ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255.0,
            weights: Sequence[float] = MS_SSIM_WEIGHTS) -> float:
    """Multi-scale SSIM on RGB (per channel on [0, 255], then channel mean).

    Standard 5 scales need min(H, W) > 160 (window 11 at the 5th scale).  For
    smaller images we use only the scales whose size is still >= 11 pixels,
    with the first ``n`` weights renormalised to sum to one; below 11 pixels
    at full scale a single scale with a shrunken (odd-sized) window is used.
    Negative cs / ssim values are clamped to 0 (ReLU) like pytorch_msssim.
    """
    x, y = _check_pair(a, b)
    x, y = np.moveaxis(x, -1, 0), np.moveaxis(y, -1, 0)
    w = np.asarray(weights, dtype=np.float64)
    h0, w0 = x.shape[-2:]
    # number of scales whose size still holds the full window
    n = 0
    hh, ww = h0, w0
    while n < len(w) and min(hh, ww) >= _WIN_SIZE:
        n += 1
        hh, ww = hh // 2 + hh % 2, ww // 2 + ww % 2
    if n == 0:
        g = _window_for(min(h0, w0))
        s, _ = _ssim_cs(x, y, g, data_range)
        return float(np.maximum(s, 0.0).mean())
    if n < len(w):  # the standard weights sum to 1.0001: keep them as-is when all scales fit
        w = w[:n] / w[:n].sum()
    g = _gauss_1d(_WIN_SIZE, _WIN_SIGMA)
    vals = []
    for i in range(n):
        s, cs = _ssim_cs(x, y, g, data_range)
        if i < n - 1:
            vals.append(np.maximum(cs, 0.0))
            x, y = _avg_pool2(x), _avg_pool2(y)
        else:
            vals.append(np.maximum(s, 0.0))
    v = np.stack(vals, axis=0)  # (n, C)
    per_channel = np.prod(v ** w[:, None], axis=0)
    return float(per_channel.mean())


# ----------------------------------------------------------------------------
# Rates
# ----------------------------------------------------------------------------

def bpp(nbytes: int, h: int, w: int) -> float:
    """Bits per pixel: 8 * nbytes / (h * w)."""
    return 8.0 * float(nbytes) / float(h * w)


def bits_per_subpixel(nbytes: int, h: int, w: int, c: int = 3) -> float:
    """Bits per subpixel (= bits per dimension): 8 * nbytes / (h * w * c)."""
    return 8.0 * float(nbytes) / float(h * w * c)


# ----------------------------------------------------------------------------
# Bjøntegaard deltas
# ----------------------------------------------------------------------------

def _clean_curve(rate, dist):
    r = np.asarray(rate, dtype=np.float64).ravel()
    d = np.asarray(dist, dtype=np.float64).ravel()
    if r.shape != d.shape:
        raise ValueError("rate and quality arrays differ in length")
    ok = np.isfinite(r) & np.isfinite(d) & (r > 0) & (d < PSNR_CAP)
    r, d = r[ok], d[ok]
    order = np.argsort(r)
    return r[order], d[order]


def _poly_deg(n: int) -> int:
    return min(3, n - 1)


def bd_rate(rate_a, psnr_a, rate_b, psnr_b) -> float:
    """Bjøntegaard delta rate of curve *b* relative to curve *a*, in percent.

    Negative means b needs fewer bits for the same PSNR.  Follows VCEG-M33 (as
    in CompressAI's ``bd_rate``): fit log(rate) as a cubic polynomial of PSNR
    for each curve, integrate both over the overlapping PSNR interval, and
    return ``(exp(mean difference) - 1) * 100``.  With fewer than 4 points
    the polynomial degree drops to ``n - 1``.  Returns ``nan`` when a curve
    has fewer than 2 usable points or the PSNR ranges do not overlap.
    """
    ra, da = _clean_curve(rate_a, psnr_a)
    rb, db = _clean_curve(rate_b, psnr_b)
    if ra.size < 2 or rb.size < 2:
        return float("nan")
    lo = max(da.min(), db.min())
    hi = min(da.max(), db.max())
    if not hi > lo:
        return float("nan")
    pa = np.polyfit(da, np.log(ra), _poly_deg(ra.size))
    pb = np.polyfit(db, np.log(rb), _poly_deg(rb.size))
    ia, ib = np.polyint(pa), np.polyint(pb)
    int_a = np.polyval(ia, hi) - np.polyval(ia, lo)
    int_b = np.polyval(ib, hi) - np.polyval(ib, lo)
    avg = (int_b - int_a) / (hi - lo)
    return float((np.exp(avg) - 1.0) * 100.0)


def bd_psnr(rate_a, psnr_a, rate_b, psnr_b) -> float:
    """Bjøntegaard delta PSNR (dB) of curve *b* relative to *a*.

    Fits PSNR as a cubic of log(rate) and averages the difference over the
    overlapping log-rate interval.  Positive means b is better.  ``nan`` when
    the rate ranges do not overlap.
    """
    ra, da = _clean_curve(rate_a, psnr_a)
    rb, db = _clean_curve(rate_b, psnr_b)
    if ra.size < 2 or rb.size < 2:
        return float("nan")
    la, lb = np.log(ra), np.log(rb)
    lo = max(la.min(), lb.min())
    hi = min(la.max(), lb.max())
    if not hi > lo:
        return float("nan")
    pa = np.polyfit(la, da, _poly_deg(ra.size))
    pb = np.polyfit(lb, db, _poly_deg(rb.size))
    ia, ib = np.polyint(pa), np.polyint(pb)
    int_a = np.polyval(ia, hi) - np.polyval(ia, lo)
    int_b = np.polyval(ib, hi) - np.polyval(ib, lo)
    return float((int_b - int_a) / (hi - lo))
