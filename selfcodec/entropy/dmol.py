"""The discretized logistic mixture (DMoL, PixelCNN++'s parameterization with RGB coupling,
Salimans et al. 2017): the likelihood of 8-bit images, in torch for training and generation,
and in exact integer tables for the coder.

Everything in torch runs in fp32 even under autocast: log-likelihoods are sums of many small
terms, and bf16 loses them.

Quantization grids of the coder (part of the format):
    logits -> 1/64 (clamped to +-2**24); means -> 1/1024 (clamped to [-16, 16]); log_scales ->
    1/64 (clamped to [-7, 7]); coeffs -> 1/1024 (clamped to [-4, 4]; they are tanh'ed so
    |c| <= 1); softmax weights: exp(-(max - l)) from a 2**30 table, normalised to 2**22 (ints);
    sigmoid argument t = (edge - mean) * inv_scale in float64 basic ops, then fixed point with
    16 fractional bits; sigmoid from a 1/64-grid table of 26-bit integers over [-20, 20] with
    integer linear interpolation. Mixture CDF = sum_k w_k * sigmoid_k (integer, < 2**48);
    every bin gets an extra floor of 2**26 (~2**-22 of the total) so every value stays codable.

Stream layout: pixels in chunks of _CHUNK; within a chunk channel by channel, each channel
after the first under the mixture weights conditioned on the earlier channels' coded bins
(_Params.observe: w_k * P_k(bin), renormalized in integers); a channel with nb = ceil(256/step)
bins is coded in two stages when nb > 32 (group of g = ceil(sqrt(nb)) bins, then the bin within
the group; e.g. 16 x 16 for step 1), so only ~2*sqrt(nb) CDF values per component and pixel
are needed. Both stages use the same integer CDF, so P(group) * P(bin | group) == P(bin).
In a range (encode_ranged): each value known to lie in [lo, hi] (at most 4 values) is coded as
value - lo, one stage, from the same integer CDF at the edges lo .. hi + 1 (values above hi get
no mass).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import FormatError
from ..nn.transforms import downscale
from . import fixedpoint as fp
from .coder import per_symbol

LOG_SCALE_MIN = -7.0
HALF_BIN = 1.0 / 255.0


def dmol_channels(c: int, k: int) -> int:
    """Network output channels for a C-channel image and K mixture components."""
    return k * (1 + 2 * c + c * (c - 1) // 2)


def dmol_split(params: torch.Tensor, c: int, k: int):
    """(B, P, H, W) network output -> logits (B,K,H,W), means and log_scales (B,C,K,H,W),
    coupling coefficients (B, C(C-1)/2, K, H, W), all fp32."""
    p = params.float()
    b, _, h, w = p.shape
    n_coef = c * (c - 1) // 2
    logits = p[:, :k]
    means = p[:, k : k + c * k].reshape(b, c, k, h, w)
    log_scales = p[:, k + c * k : k + 2 * c * k].reshape(b, c, k, h, w).clamp(min=LOG_SCALE_MIN)
    coeffs = torch.tanh(p[:, k + 2 * c * k :].reshape(b, n_coef, k, h, w))
    return logits, means, log_scales, coeffs


def coupled_means(means, coeffs, x):
    """Means of each channel after the R->G->B coupling with the known values x (B,C,H,W) in [-1,1]."""
    c = means.shape[1]
    if c == 1:
        return means
    out = [means[:, 0]]
    out.append(means[:, 1] + coeffs[:, 0] * x[:, 0:1])
    out.append(means[:, 2] + coeffs[:, 1] * x[:, 0:1] + coeffs[:, 2] * x[:, 1:2])
    return torch.stack(out, 1)


def add_centred(params, corr, c: int, k: int, coupling):
    """params + corr, the means' correction taken in centred form: in raw form (what the coder
    reads) channel j's mean is m_j + sum_i a_ij x_i; centred, it is M_j + sum_i a_ij (x_i - M_i)
    with M_j = m_j + sum_i a_ij M_i the channel's predicted value. corr moves M, and the
    coefficients a = coupling(raw) (torch.tanh, or the coder's table on the exact path) from
    both the old and the new raw values; in float64 on the exact path, so the result is the
    same on every machine (elementwise products and sums are correctly rounded)."""
    new = params + corr
    if c == 1:
        return new
    b, _, h, w = params.shape
    lo, hi, n = k, k + c * k, c * (c - 1) // 2
    m = params[:, lo:hi].reshape(b, c, k, h, w)
    old_a = coupling(params[:, k + 2 * c * k:]).to(params.dtype).reshape(b, n, k, h, w)
    new_a = coupling(new[:, k + 2 * c * k:]).to(params.dtype).reshape(b, n, k, h, w)
    dm = corr[:, lo:hi].reshape(b, c, k, h, w)
    pred = [m[:, 0] + dm[:, 0]]  # M + its correction, channel by channel
    pred.append(m[:, 1] + old_a[:, 0] * m[:, 0] + dm[:, 1])
    pred.append(m[:, 2] + old_a[:, 1] * m[:, 0] + old_a[:, 2] * (pred[1] - dm[:, 1]) + dm[:, 2])
    raw = [pred[0], pred[1] - new_a[:, 0] * pred[0], pred[2] - new_a[:, 1] * pred[0] - new_a[:, 2] * pred[1]]
    return torch.cat([new[:, :lo], torch.stack(raw, 1).reshape(b, c * k, h, w), new[:, hi:]], 1)


def dmol_log_prob(v: torch.Tensor, params: torch.Tensor, k: int) -> torch.Tensor:
    """log P(v) per image in nats; v holds integers 0..255, shape (B, C, H, W)."""
    return dmol_log_prob_pixels(v, params, k).sum(dim=(1, 2))


def dmol_log_prob_pixels(v: torch.Tensor, params: torch.Tensor, k: int) -> torch.Tensor:
    """log P(v) per pixel (all channels), shape (B, H, W), nats."""
    c = v.shape[1]
    logits, means, log_scales, coeffs = dmol_split(params, c, k)
    x = (v.float() / 127.5 - 1.0).unsqueeze(2)  # (B,C,1,H,W)
    m = coupled_means(means, coeffs, x[:, :, 0])
    lp = _bin_log_prob(x, m, log_scales).sum(1) + torch.log_softmax(logits, 1)  # (B,K,H,W)
    return torch.logsumexp(lp, 1)


def _bin_log_prob(x, m, log_scales):
    """log P(bin of x) under each logistic component (x in [-1, 1], broadcast against m);
    the end bins reach to -inf and +inf."""
    centred = x - m
    inv_s = torch.exp(-log_scales)
    plus = inv_s * (centred + HALF_BIN)
    minus = inv_s * (centred - HALF_BIN)
    log_cdf_plus = plus - F.softplus(plus)  # log sigmoid(plus)
    log_one_minus_cdf_minus = -F.softplus(minus)
    cdf_delta = torch.sigmoid(plus) - torch.sigmoid(minus)
    mid = inv_s * centred
    log_pdf_mid = mid - log_scales - 2.0 * F.softplus(mid)
    # Interior bins: log of the CDF difference, or its density approximation where it underflows.
    inner = torch.where(
        cdf_delta > 1e-5,
        torch.log(torch.clamp(cdf_delta, min=1e-12)),
        log_pdf_mid - math.log(127.5),
    )
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_minus, inner))


def block_mean_range(v: torch.Tensor, y: torch.Tensor):
    """For the last pixel (bottom right) of each 2x2 block of v (B, C, H, W; even H, W; only the
    other three pixels are read): the range [lo, hi] of values (at most 4) that give the block
    the rounded mean y = downscale(v) (B, C, H/2, W/2). Returns lo, hi of y's shape."""
    v, y = v.float(), y.float()
    others = v[:, :, 0::2, 0::2] + v[:, :, 0::2, 1::2] + v[:, :, 1::2, 0::2]
    # downscale rounds (sum + 2) / 4 down, so the block sum lies in [4y - 2, 4y + 1]
    return (4 * y - 2 - others).clamp(0, 255), (4 * y + 1 - others).clamp(0, 255)


def dmol_log_prob_given_y(v: torch.Tensor, params: torch.Tensor, k: int) -> torch.Tensor:
    """log P(v | y) per image in nats, for v whose 2x2 rounded means y = downscale(v) are
    known: three pixels of each block under the DMoL, and each channel of the last pixel
    under the joint mixture's p(x_c | x_<c) (the RGB coupling applied, each component
    weighted by its probability of the earlier channels' values: what the entropy coder
    codes channel by channel), renormalized over the at most 4 values consistent with y.
    A proper distribution over the images that downscale to y, so a sharper
    -log p(x | y, z) than the DMoL's, which spends probability on images with other means."""
    lp = dmol_log_prob_pixels(v, params, k)
    c = v.shape[1]
    lo, hi = block_mean_range(v, downscale(v))
    logits, means, log_scales, coeffs = dmol_split(params[:, :, 1::2, 1::2], c, k)
    x = v[:, :, 1::2, 1::2].float() / 127.5 - 1.0  # (B,C,h,w)
    m = coupled_means(means, coeffs, x)  # (B,C,K,h,w)
    comp = _bin_log_prob(x.unsqueeze(2), m, log_scales)  # each component's log P(x_c | x_<c)
    seen = torch.cat([torch.zeros_like(comp[:, :1]), comp[:, :-1].cumsum(1)], 1)  # log P_k(x_<c)
    log_w = torch.log_softmax(logits.unsqueeze(1) + seen, 2)  # (B,C,K,h,w)
    own = torch.logsumexp(comp + log_w, 2)
    cand = lo.unsqueeze(2) + torch.arange(4, device=v.device, dtype=lo.dtype).view(1, 1, 4, 1, 1)
    xc = (cand.clamp(max=255) / 127.5 - 1.0).unsqueeze(3)  # (B,C,4,1,h,w)
    mix = torch.logsumexp(_bin_log_prob(xc, m.unsqueeze(2), log_scales.unsqueeze(2)) + log_w.unsqueeze(2), 3)
    norm = torch.logsumexp(mix.masked_fill(cand > hi.unsqueeze(2), float("-inf")), 2)  # (B,C,h,w)
    last = (own - norm).sum(1)
    return lp.sum(dim=(1, 2)) - lp[:, 1::2, 1::2].sum(dim=(1, 2)) + last.sum(dim=(1, 2))


def dmol_point(params: torch.Tensor, c: int, k: int, how: str = "mean") -> torch.Tensor:
    """A point estimate 0..255 of a DMoL image: `mean` of the mixture, or the `mode`
    (centre of the most probable component), channel by channel through the coupling."""
    logits, means, log_scales, coeffs = dmol_split(params, c, k)
    weights = torch.softmax(logits, 1)
    best = F.one_hot(logits.argmax(1), k).permute(0, 3, 1, 2).float()
    sel = weights if how == "mean" else best
    x = torch.zeros(means.shape[0], c, *means.shape[-2:], device=params.device)
    for ch in range(c):
        m = coupled_means(means, coeffs, x)[:, ch]
        x[:, ch] = torch.round((sel * m).sum(1).clamp(-1, 1) * 127.5 + 127.5) / 127.5 - 1.0
    return torch.round((x + 1.0) * 127.5)


def dmol_mean(params: torch.Tensor, c: int, k: int) -> torch.Tensor:
    """The mixture mean 0..255, differentiable (dmol_point without rounding), for training
    against a squared error."""
    logits, means, log_scales, coeffs = dmol_split(params, c, k)
    weights = torch.softmax(logits, 1)
    chans = []
    for ch in range(c):
        known = torch.stack(chans + [torch.zeros_like(weights[:, 0])] * (c - ch), 1)
        chans.append((weights * coupled_means(means, coeffs, known)[:, ch]).sum(1).clamp(-1, 1))
    return (torch.stack(chans, 1) + 1.0) * 127.5


def dmol_sample(params: torch.Tensor, c: int, k: int, temperature: float = 1.0) -> torch.Tensor:
    """Draw integers 0..255 from the mixture (for generation)."""
    logits, means, log_scales, coeffs = dmol_split(params, c, k)
    g = -torch.log(-torch.log(torch.rand_like(logits).clamp(1e-6, 1 - 1e-6)))
    sel = F.one_hot((logits + g).argmax(1), k).permute(0, 3, 1, 2).float()
    x = torch.zeros(means.shape[0], c, *means.shape[-2:], device=params.device)
    for ch in range(c):
        m = (coupled_means(means, coeffs, x)[:, ch] * sel).sum(1)
        s = (torch.exp(log_scales[:, ch]) * sel).sum(1) * temperature
        u = torch.rand_like(m).clamp(1e-5, 1 - 1e-5)
        x[:, ch] = (m + s * (torch.log(u) - torch.log1p(-u))).clamp(-1, 1)
        x[:, ch] = torch.round((x[:, ch] + 1) * 127.5) / 127.5 - 1.0
    return torch.round((x + 1.0) * 127.5)



# ---- the coder's side: exact integer tables ------------------------------------------------

_LOGIT_GRID = float(fp.LOGIT_GRID)
_MEAN_GRID = 1024.0
_MEAN_CLAMP = 16.0 * _MEAN_GRID
_COEF_GRID = 1024.0
_COEF_CLAMP = 4.0 * _COEF_GRID
_LOGIT_CLAMP = float(1 << 24)
_W_BITS = 22
_ONE_S = 1 << fp.SIGMOID_BITS
_EPS = float(1 << (fp.SIGMOID_BITS + _W_BITS - 22))     # per-bin floor, 2**-22 of total
_U_SCALE = float(fp.SIGMOID_GRID << fp.SIGMOID_FRAC_BITS)  # t -> 16 fractional bits
_U_OFF = float((fp.SIGMOID_RANGE * fp.SIGMOID_GRID) << fp.SIGMOID_FRAC_BITS)
_U_MAX = 2.0 * _U_OFF - 1.0
_FRAC_MASK = (1 << fp.SIGMOID_FRAC_BITS) - 1
_DIFF_BITS = 20
_DIFF_MASK = (1 << _DIFF_BITS) - 1
assert int(fp.SIGMOID_DIFF.max()) <= _DIFF_MASK
#: sigmoid table value and forward difference packed into one int64 (one gather)
_SIG_PACKED = (fp.SIGMOID_TABLE << _DIFF_BITS) | fp.SIGMOID_DIFF
#: lower edge (in the scaled space x = v/127.5 - 1) of value v, v = 0..256
_EDGE_X = (2.0 * np.arange(257, dtype=np.float64) - 256.0) / 255.0
#: scaled value of v = 0..255
_VAL_X = (2.0 * np.arange(256, dtype=np.float64) - 255.0) / 255.0
_CHUNK = 2048  # pixels per batch (bounds memory/cache: ~K*17*2048 elements per temporary)
_MAX_SINGLE_STAGE = 32


def num_bins(step: int) -> int:
    step = _check_step(step)
    return (256 + step - 1) // step


def _check_step(step) -> int:
    if isinstance(step, (bool, np.bool_)) or int(step) != step:
        raise ValueError("step must be an integer")
    step = int(step)
    if not 1 <= step <= 256:
        raise ValueError("step must be in [1, 256]")
    return step


def _reps(step: int) -> np.ndarray:
    nb = (256 + step - 1) // step
    lo = np.arange(nb, dtype=np.int64) * step
    hi = np.minimum(255, lo + step - 1)
    return ((lo + hi) // 2).astype(np.uint8)


def bin_values(values, step: int) -> np.ndarray:
    """Representative (bin middle, rounded down) the decoder outputs for each value."""
    step = _check_step(step)
    v = np.asarray(values)
    if v.dtype != np.uint8:
        raise TypeError("values must be uint8")
    return _reps(step)[v.astype(np.int64) // step]


def _layout(nb: int):
    """(group size, number of groups) of the two-stage coding of nb bins."""
    if nb <= _MAX_SINGLE_STAGE:
        return nb, 1
    g = int(math.isqrt(nb - 1)) + 1  # ceil(sqrt(nb))
    return g, (nb + g - 1) // g


class _Params:
    """Grid-quantized DMoL parameters of one chunk of pixels."""

    def __init__(self, logits, means, log_scales, coeffs, lo, hi):
        lq = _quant(logits[lo:hi], _LOGIT_GRID, _LOGIT_CLAMP).astype(np.int64)
        m = lq.max(axis=1, keepdims=True) - lq
        np.minimum(m, fp.EXP_NEG_MAX, out=m)
        e = fp.EXP_NEG_TABLE[m]
        w = (e << _W_BITS) // e.sum(axis=1, keepdims=True)
        self.w = w.astype(np.float64)                               # exact ints <= 2**22
        self.top = w.sum(axis=1).astype(np.float64) * float(_ONE_S)  # CDF at +inf, < 2**48
        self.mu = _quant(means[lo:hi], _MEAN_GRID, _MEAN_CLAMP) / _MEAN_GRID
        ls = _quant(log_scales[lo:hi], float(fp.LOG_SCALE_GRID), float(fp.LOG_SCALE_MAX_Q))
        ls = np.maximum(ls, float(fp.LOG_SCALE_MIN_Q)).astype(np.int64) - fp.LOG_SCALE_MIN_Q
        self.beta = fp.INV_SCALE_F64[ls] * _U_SCALE                 # exact power-of-2 scaling
        self.coef = _quant(coeffs[lo:hi], _COEF_GRID, _COEF_CLAMP) / _COEF_GRID

    def channel_mean(self, c: int, xs) -> np.ndarray:
        """Coupled means of channel c given scaled values xs[j] of channels j < c."""
        mu = self.mu[:, c, :]
        base = c * (c - 1) // 2
        for j in range(c):
            mu = mu + self.coef[:, base + j, :] * xs[j][:, None]
        return mu

    def observe(self, mu, beta, bins, step: int, nb: int) -> None:
        """Condition the mixture weights on one channel's coded bins: w_k <- w_k * P_k(bin),
        renormalized to 2**22, all in integers. The next channel is then coded under the
        joint mixture's p(x_c | x_<c) (the model's likelihood) instead of under the prior
        weights, which spend bits on components the earlier channels already ruled out."""
        j = np.stack([bins, bins + 1], axis=1)
        g = _sigmoids(_EDGE_X[np.minimum(j * step, 256)], mu, beta)  # (n, K, 2)
        lo = np.where(bins[:, None] == 0, 0, g[:, :, 0])
        hi = np.where(bins[:, None] + 1 >= nb, _ONE_S, g[:, :, 1])
        w0 = self.w.astype(np.int64)
        wp = w0 * np.maximum(hi - lo, 0)  # < 2**48
        # keep the largest product within 30 bits so that (t << 22) cannot overflow int64
        shift = np.maximum(np.frexp(wp.max(axis=1, keepdims=True).astype(np.float64))[1] - 30, 0)
        t = wp >> shift
        total = t.sum(axis=1, keepdims=True)
        # a bin no component reaches (coded through the floor) leaves the weights as they were
        w = np.where(total > 0, (t << _W_BITS) // np.maximum(total, 1), w0)
        self.w = w.astype(np.float64)
        self.top = w.sum(axis=1).astype(np.float64) * float(_ONE_S)


def _quant(x, grid: float, clamp: float) -> np.ndarray:
    q = np.rint(np.asarray(x, dtype=np.float64) * grid)
    q = np.nan_to_num(q, nan=0.0, posinf=clamp, neginf=-clamp)
    return np.clip(q, -clamp, clamp)


def _sigmoids(e, mu, beta) -> np.ndarray:
    """Integer sigmoid (int64, <= 2**26) of each component (n, K, E) at edges e (n|1, E)."""
    u = e[:, None, :] - mu[:, :, None]
    u *= beta[:, :, None]
    u += _U_OFF
    np.clip(u, 0.0, _U_MAX, out=u)
    ui = u.astype(np.int64)                 # non-negative, so truncation == floor
    g = _SIG_PACKED[ui >> fp.SIGMOID_FRAC_BITS]
    ui &= _FRAC_MASK
    ui *= g & _DIFF_MASK
    ui >>= fp.SIGMOID_FRAC_BITS
    g >>= _DIFF_BITS
    g += ui                                 # sigmoid, integer-interpolated, <= 2**26
    return g


def _mix_cdf(e, mu, beta, w) -> np.ndarray:
    """Integer mixture CDF (as exact float64) at edges e (n|1, E) for mu, beta, w (n, K)."""
    # Exact: integer products < 2**48 and their sums < 2**48 are exactly representable,
    # so any BLAS summation order / FMA use gives the same result.
    g = _sigmoids(e, mu, beta)
    if w.shape[1] == 1:  # one component: the same single product, without a batched matmul
        return w * g[:, 0, :]
    return np.matmul(w[:, None, :], g.astype(np.float64))[:, 0, :]


def _cdf_at(j, mu, beta, p: _Params, step: int, nb: int) -> np.ndarray:
    """Floored integer CDF (exact float64) at bin boundaries j (n|1, E), clipped to [0, nb]."""
    j = np.minimum(j, nb)
    e = _EDGE_X[j if step == 1 else np.minimum(j * step, 256)]  # (j <= nb = 256 at step 1)
    f = _mix_cdf(e, mu, beta, p.w)
    # in place: the fine stage's edges (most of the calls) are never 0 and reach nb only in a
    # partial last group
    np.copyto(f, 0.0, where=j == 0)
    np.copyto(f, p.top[:, None], where=j == nb)
    f += j * _EPS
    return f


def _channel_tables(p: _Params, mu, beta, step: int, nb: int):
    """Coarse-stage probabilities (n, ng) and the coarse CDF (n, ng+1); None if 1 stage."""
    g, ng = _layout(nb)
    if ng == 1:
        return None, None
    jc = (np.arange(ng + 1, dtype=np.int64) * g)[None, :]
    cdf = _cdf_at(jc, mu, beta, p, step, nb)
    return np.ascontiguousarray(np.diff(cdf, axis=1)), cdf


def _fine_tables(p: _Params, mu, beta, step: int, nb: int, group, coarse_cdf):
    """Fine-stage probabilities (n, g) within each pixel's group."""
    g, ng = _layout(nb)
    n = mu.shape[0]
    if ng == 1:
        j = np.arange(nb + 1, dtype=np.int64)[None, :]
        cdf = _cdf_at(j, mu, beta, p, step, nb)
    else:
        j = group[:, None] * g + np.arange(1, g, dtype=np.int64)[None, :]
        inner = _cdf_at(j, mu, beta, p, step, nb)
        rows = np.arange(n)
        cdf = np.empty((n, g + 1), dtype=np.float64)
        cdf[:, 0] = coarse_cdf[rows, group]
        cdf[:, g] = coarse_cdf[rows, group + 1]
        cdf[:, 1:g] = inner
    return np.ascontiguousarray(np.diff(cdf, axis=1))


def _check_dmol(logits, means, log_scales, coeffs, values=None):
    """The per-pixel arrays checked for shape -> (arrays, values, N, C)."""
    means = np.asarray(means)
    if means.ndim != 3:
        raise ValueError("means must have shape (N, C, K)")
    n, c, k = means.shape
    if c < 1:
        raise ValueError("need at least one channel")
    logits = np.asarray(logits)
    log_scales = np.asarray(log_scales)
    if logits.shape != (n, k):
        raise ValueError(f"logits shape {logits.shape} != {(n, k)}")
    if log_scales.shape != (n, c, k):
        raise ValueError(f"log_scales shape {log_scales.shape} != {(n, c, k)}")
    npairs = c * (c - 1) // 2
    if coeffs is None:
        if npairs:
            raise ValueError("coeffs required for C > 1")
        coeffs = np.zeros((n, 0, k))
    coeffs = np.asarray(coeffs)
    if coeffs.shape != (n, npairs, k):
        raise ValueError(f"coeffs shape {coeffs.shape} != {(n, npairs, k)}")
    if values is not None:
        values = np.asarray(values)
        if values.dtype != np.uint8:
            raise TypeError("values must be uint8")
        if values.shape != (n, c):
            raise ValueError(f"values shape {values.shape} != {(n, c)}")
    return (logits, means, log_scales, coeffs), values, n, c


_RANGE = 4


def _check_range(lo, hi, n, c, values=None):
    lo, hi = np.asarray(lo, dtype=np.int64), np.asarray(hi, dtype=np.int64)
    if lo.shape != (n, c) or hi.shape != (n, c):
        raise ValueError(f"lo and hi must have shape {(n, c)}")
    if np.any(lo < 0) or np.any(hi > 255) or np.any(hi < lo) or np.any(hi - lo >= _RANGE):
        raise ValueError(f"ranges must lie in 0..255 and hold 1 to {_RANGE} values")
    if values is not None and (np.any(values < lo) or np.any(values > hi)):
        raise ValueError("a value lies outside its range")
    return lo, hi


def _range_probs(p: _Params, mu, beta, lo, hi) -> np.ndarray:
    """Integer-valued probabilities (n, _RANGE) of the values lo .. lo + 3; none above hi."""
    j = np.minimum(lo[:, None] + np.arange(_RANGE + 1), hi[:, None] + 1)
    return np.ascontiguousarray(np.diff(_cdf_at(j, mu, beta, p, 1, 256), axis=1))




def _chunks(n: int):
    return [(a, min(n, a + _CHUNK)) for a in range(0, n, _CHUNK)]


def _code_channels(arrays, a: int, b: int, c: int, step: int, channel_bins) -> None:
    """The one loop of DMoL coding, over the channels of the pixels a..b: each channel's coupled
    means and scales given the earlier channels, then channel_bins(ch, p, mu, beta) -> its bins
    (int64; known to the encoder and the size estimate, decoded by the decoder), which the
    later channels' coupling and mixture weights read."""
    nb, reps = num_bins(step), _reps(step)
    p = _Params(*arrays, a, b)
    xs = []
    for ch in range(c):
        beta = p.beta[:, ch, :]
        mu = p.channel_mean(ch, xs)
        bins = channel_bins(ch, p, mu, beta)
        xs.append(_VAL_X[reps[bins]])
        if ch + 1 < c and p.w.shape[1] > 1:  # (one component's weight stays 2**22 whatever it sees)
            p.observe(mu, beta, bins, step, nb)


def _decoding(fn):
    """Bytes the coder cannot parse become a FormatError (the file's fault, not the caller's)."""
    def wrapped(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except FormatError:
            raise
        except Exception as exc:
            raise FormatError(f"corrupt entropy-coded section: {exc}") from None
    wrapped.__doc__, wrapped.__name__ = fn.__doc__, fn.__name__
    return wrapped


class DMoL:
    """8-bit images of `c` channels under `k` logistic components per pixel. Training and
    generation use the torch side (log_prob, mean, point, sample: parameters (B, P, H, W) from a
    network); the coder the numpy side (arrays: per-pixel parameters, then encode / decode /
    bits, whole or within known ranges)."""

    channels = staticmethod(dmol_channels)
    split = staticmethod(dmol_split)
    log_prob = staticmethod(dmol_log_prob)
    log_prob_pixels = staticmethod(dmol_log_prob_pixels)
    log_prob_given_y = staticmethod(dmol_log_prob_given_y)
    add_centred = staticmethod(add_centred)
    point = staticmethod(dmol_point)
    mean = staticmethod(dmol_mean)
    sample = staticmethod(dmol_sample)
    block_mean_range = staticmethod(block_mean_range)
    bin_values = staticmethod(bin_values)
    num_bins = staticmethod(num_bins)

    @staticmethod
    def min_bits(n: int, step: int = 1) -> float:
        """The fewest bits n values can cost, whatever the parameters: every bin keeps at least
        2^-22 of the mass (_EPS against a CDF below 2^48), so no bin is likelier than that allows."""
        nb = num_bins(step)
        floor = _EPS / (float(1 << 48) + nb * _EPS)
        return -n * math.log2(1.0 - (nb - 1) * floor)

    @staticmethod
    def arrays(params: torch.Tensor, c: int, k: int, coef_of=None):
        """(1, P, h, w) -> the per-pixel arrays (logits (N, K), means and log_scales (N, C, K),
        coeffs (N, C(C-1)/2, K)), pixels row-major, float64. coef_of(raw) -> the coupling's tanh
        (the exact path's table); torch's tanh without it."""
        logits, means, log_scales, coeffs = dmol_split(params, c, k)
        if coef_of is not None:
            coeffs = torch.from_numpy(coef_of(_np(params[:, k + 2 * c * k:]))).reshape(coeffs.shape)
        logits = _np(logits[0]).reshape(k, -1).T
        means = _np(means[0]).reshape(c, k, -1).transpose(2, 0, 1)
        log_scales = _np(log_scales[0]).reshape(c, k, -1).transpose(2, 0, 1)
        coeffs = _np(coeffs[0]).reshape(c * (c - 1) // 2, k, logits.shape[0]).transpose(2, 0, 1)  # C=1: no pairs
        return logits, means, log_scales, coeffs

    @staticmethod
    def encode(coder, values, arrays, step: int = 1) -> float:
        """Push uint8 ``values`` (N, C) onto ``coder``; returns -log2 of the probabilities pushed
        (DMoL.bits, from the tables at hand). With ``step`` > 1 the bins
        ``[b*step, b*step+step-1]`` are coded (lossy); the decoder returns
        ``bin_values(values, step)`` and the RGB coupling uses those representatives."""
        step = _check_step(step)
        arrays, values, n, c = _check_dmol(*arrays, values)
        nb = num_bins(step)
        g, _ = _layout(nb)
        bins, bits = values.astype(np.int64) // step, []
        for a, b in reversed(_chunks(n)):  # a stack: the last chunk goes on first
            segs = []  # in decode order

            def known(ch, p, mu, beta):
                bc = bins[a:b, ch]
                probs_c, cdf_c = _channel_tables(p, mu, beta, step, nb)
                if probs_c is not None:
                    grp = bc // g
                    within = bc - grp * g
                    fine = _fine_tables(p, mu, beta, step, nb, grp, cdf_c)
                    segs.extend([(grp.astype(np.int32), probs_c), (within.astype(np.int32), fine)])
                    # P(group) P(bin | group) = the bin's fine entry over the coarse total
                    total = cdf_c[:, -1] - cdf_c[:, 0]
                    bits.append(float(np.sum(np.log2(total) - np.log2(fine[np.arange(len(bc)), within]))))
                elif nb > 1:  # a single bin carries no information
                    segs.append((bc.astype(np.int32), _fine_tables(p, mu, beta, step, nb, None, None)))
                    bits.append(_bits_of(*segs[-1]))
                return bc

            _code_channels(arrays, a, b, c, step, known)
            for s, pr in reversed(segs):
                coder.push(s, per_symbol(), pr)
        return sum(bits)

    @staticmethod
    def decode(coder, arrays, step: int = 1) -> np.ndarray:
        """The next section DMoL.encode pushed; uint8 (N, C) (representatives if step > 1)."""
        step = _check_step(step)
        arrays, _, n, c = _check_dmol(*arrays)  # the caller's error, not the file's: before decoding
        return _decode(coder, arrays, step, n, c)

    @staticmethod
    def bits(values, arrays, step: int = 1) -> float:
        """Sum of -log2 P(bin) under the exact fixed-point model (what the coder approximates)."""
        return sum(float(np.sum(np.log2(total) - np.log2(cdf[:, 1] - cdf[:, 0])))
                   for _, _, _, cdf, total in _cdfs(values, arrays, step, lambda b, nb: np.stack([b, b + 1], axis=1)))

    @staticmethod
    def pmf(values, arrays, step: int = 1) -> np.ndarray:
        """Full pmfs (N, C, num_bins(step)) float64 that the coder uses for each pixel/channel.
        ``values`` (uint8 (N, C)) is needed only for the RGB coupling of channels > 0 (its
        representatives ``bin_values(values, step)`` are used, as in the decoder)."""
        values = np.asarray(values)
        n = values.shape[0]
        c = values.shape[1] if values.ndim == 2 else 0
        out = np.empty((n, c, num_bins(step)), dtype=np.float64)
        for a, b, ch, cdf, total in _cdfs(values, arrays, step, lambda b, nb: np.arange(nb + 1, dtype=np.int64)[None, :]):
            out[a:b, ch] = np.diff(cdf, axis=1) / total[:, None]
        return out

    @staticmethod
    def encode_ranged(coder, values, lo, hi, arrays) -> None:
        """Push uint8 ``values`` (N, C), each known to lie in [lo, hi] (int arrays (N, C), at
        most 4 values), onto ``coder``."""
        segs = list(_range_symbols(values, lo, hi, arrays))
        for s, pr in reversed(segs):
            coder.push(s.astype(np.int32), per_symbol(), pr)
        return sum(_bits_of(s, pr) for s, pr in segs)

    @staticmethod
    def decode_ranged(coder, lo, hi, arrays) -> np.ndarray:
        """The next section DMoL.encode_ranged pushed; uint8 (N, C)."""
        n, c = np.asarray(arrays[1]).shape[:2]
        lo, hi = _check_range(lo, hi, n, c)  # the caller's error, not the file's: before decoding
        return _decode_ranged(coder, lo, hi, arrays)

    @staticmethod
    def bits_ranged(values, lo, hi, arrays) -> float:
        """-log2 of the probabilities DMoL.encode_ranged codes ``values`` with."""
        return sum(_bits_of(s, pr) for s, pr in _range_symbols(values, lo, hi, arrays))


def _bits_of(symbols, probs) -> float:
    """-log2 of each symbol's probability in its row of (unnormalised) probabilities, summed."""
    return float(np.sum(np.log2(probs.sum(1)) - np.log2(probs[np.arange(len(symbols)), symbols])))


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float64).cpu().numpy()


def _cdfs(values, arrays, step, edges_fn):
    """(a, b, channel, floored integer CDF at edges_fn(bins, nb), total) per chunk a..b and
    channel, in decode order."""
    step = _check_step(step)
    arrays, values, n, c = _check_dmol(*arrays, values)
    nb = num_bins(step)
    bins = values.astype(np.int64) // step
    out = []
    for a, b in _chunks(n):
        def known(ch, p, mu, beta):
            out.append((a, b, ch, _cdf_at(edges_fn(bins[a:b, ch], nb), mu, beta, p, step, nb), p.top + nb * _EPS))
            return bins[a:b, ch]

        _code_channels(arrays, a, b, c, step, known)
    return out


def _range_symbols(values, lo, hi, arrays):
    """(symbols value - lo, probabilities) per chunk and channel in decode order, for known values."""
    arrays, values, n, c = _check_dmol(*arrays, values)
    lo, hi = _check_range(lo, hi, n, c, values)
    v, out = values.astype(np.int64), []
    for a, b in _chunks(n):
        def known(ch, p, mu, beta):
            out.append((v[a:b, ch] - lo[a:b, ch], _range_probs(p, mu, beta, lo[a:b, ch], hi[a:b, ch])))
            return v[a:b, ch]

        _code_channels(arrays, a, b, c, 1, known)
    return out


@_decoding
def _decode(coder, arrays, step, n, c) -> np.ndarray:
    nb = num_bins(step)
    g, _ = _layout(nb)
    out = np.zeros((n, c), dtype=np.uint8)
    for a, b in _chunks(n):
        def decoded(ch, p, mu, beta):
            probs_c, cdf_c = _channel_tables(p, mu, beta, step, nb)
            if nb == 1:
                bc = np.zeros(b - a, dtype=np.int64)
            elif probs_c is not None:
                grp = np.asarray(coder.pop(per_symbol(), probs_c), dtype=np.int64)
                fine = np.asarray(coder.pop(per_symbol(), _fine_tables(p, mu, beta, step, nb, grp, cdf_c)), dtype=np.int64)
                bc = grp * g + fine
            else:
                bc = np.asarray(coder.pop(per_symbol(), _fine_tables(p, mu, beta, step, nb, None, None)), dtype=np.int64)
            np.clip(bc, 0, nb - 1, out=bc)  # padded (zero-mass) bins: only on corruption
            out[a:b, ch] = _reps(step)[bc]
            return bc

        _code_channels(arrays, a, b, c, step, decoded)
    return out


@_decoding
def _decode_ranged(coder, lo, hi, arrays) -> np.ndarray:
    arrays, _, n, c = _check_dmol(*arrays)
    out = np.zeros((n, c), dtype=np.int64)
    for a, b in _chunks(n):
        def decoded(ch, p, mu, beta):
            s = np.asarray(coder.pop(per_symbol(), _range_probs(p, mu, beta, lo[a:b, ch], hi[a:b, ch])), dtype=np.int64)
            out[a:b, ch] = np.minimum(lo[a:b, ch] + s, hi[a:b, ch])  # beyond hi (zero mass): only on corruption
            return out[a:b, ch]

        _code_channels(arrays, a, b, c, 1, decoded)
    return out.astype(np.uint8)
