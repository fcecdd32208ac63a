"""Correctness of selfcodec.metrics (numpy only, no data files)."""
import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from selfcodec import metrics as M  # noqa: E402


def _img(h=64, w=96, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / (h + w) + 60], -1)
    return np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)


def test_psnr_known_value():
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[..., 0] = 10  # MSE = 100/3 over all subpixels
    assert M.psnr(a, b) == pytest.approx(10 * math.log10(255 ** 2 / (100 / 3)), abs=1e-9)
    c = np.full((8, 8, 3), 100, np.uint8)
    d = c + 1  # MSE = 1
    assert M.psnr(c, d) == pytest.approx(20 * math.log10(255), abs=1e-9)


def test_psnr_identical_is_cap():
    a = _img()
    assert M.psnr(a, a) == M.PSNR_CAP == 100.0


def test_psnr_shape_mismatch():
    with pytest.raises(ValueError):
        M.psnr(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 3), np.uint8))


def test_ms_ssim_identity_and_monotone():
    a = _img(200, 240)  # big enough for all 5 scales
    assert M.ms_ssim(a, a) == pytest.approx(1.0, abs=1e-9)
    rng = np.random.default_rng(1)
    vals = []
    for s in (2, 8, 20, 50):
        b = np.clip(a + rng.normal(0, s, a.shape), 0, 255).astype(np.uint8)
        vals.append(M.ms_ssim(a, b))
    assert all(0 < v < 1 for v in vals)
    assert vals == sorted(vals, reverse=True)


def test_ms_ssim_small_images():
    for h, w in ((64, 64), (20, 30), (5, 7), (1, 1)):
        a = _img(h, w, 2)
        b = np.clip(a.astype(int) + 5, 0, 255).astype(np.uint8)
        assert M.ms_ssim(a, a) == pytest.approx(1.0, abs=1e-9)
        v = M.ms_ssim(a, b)
        assert np.isfinite(v) and 0 <= v <= 1


def test_ms_ssim_matches_float64_reference():
    """The float32 strip filter agrees with a plain float64 implementation."""
    a = _img(330, 300, 3)  # > 64K px: float32 path at full scale
    b = np.clip(a + np.random.default_rng(4).normal(0, 12, a.shape), 0, 255).astype(np.uint8)
    g = M._gauss_1d(11, 1.5)

    def filt(x):
        k = g.size
        y = sum(g[i] * x[..., i:i + x.shape[-2] - k + 1, :] for i in range(k))
        return sum(g[i] * y[..., :, i:i + x.shape[-1] - k + 1] for i in range(k))

    def ssim_cs(x, y):
        c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
        mu1, mu2 = filt(x), filt(y)
        s11 = filt(x * x) - mu1 ** 2
        s22 = filt(y * y) - mu2 ** 2
        s12 = filt(x * y) - mu1 * mu2
        cs = (2 * s12 + c2) / (s11 + s22 + c2)
        return (((2 * mu1 * mu2 + c1) / (mu1 ** 2 + mu2 ** 2 + c1)) * cs).mean((-2, -1)), cs.mean((-2, -1))

    x = np.moveaxis(a.astype(np.float64), -1, 0)
    y = np.moveaxis(b.astype(np.float64), -1, 0)
    w = np.array(M.MS_SSIM_WEIGHTS)
    vals = []
    for i in range(5):
        s, cs = ssim_cs(x, y)
        if i < 4:
            vals.append(np.maximum(cs, 0))
            x, y = M._avg_pool2(x), M._avg_pool2(y)
        else:
            vals.append(np.maximum(s, 0))
    ref = float(np.prod(np.stack(vals) ** w[:, None], 0).mean())
    assert M.ms_ssim(a, b) == pytest.approx(ref, abs=1e-6)


def test_bpp():
    assert M.bpp(1000, 100, 80) == pytest.approx(1.0)
    assert M.bits_per_subpixel(3000, 100, 80) == pytest.approx(1.0)


RATE = np.array([0.2, 0.35, 0.6, 1.0, 1.6])
PSNR = np.array([27.0, 29.5, 32.0, 34.5, 37.0])


def test_bd_rate_self_and_half():
    assert M.bd_rate(RATE, PSNR, RATE, PSNR) == pytest.approx(0.0, abs=1e-9)
    assert M.bd_rate(RATE, PSNR, RATE / 2, PSNR) == pytest.approx(-50.0, abs=1e-6)
    assert M.bd_rate(RATE, PSNR, RATE * 2, PSNR) == pytest.approx(100.0, abs=1e-6)


def test_bd_psnr():
    assert M.bd_psnr(RATE, PSNR, RATE, PSNR) == pytest.approx(0.0, abs=1e-9)
    assert M.bd_psnr(RATE, PSNR, RATE, PSNR + 1.0) == pytest.approx(1.0, abs=1e-6)


def test_bd_no_overlap_is_nan():
    assert math.isnan(M.bd_rate(RATE, PSNR, RATE, PSNR + 20))
    assert math.isnan(M.bd_psnr(RATE, PSNR, RATE * 100, PSNR))
    assert math.isnan(M.bd_rate(RATE[:1], PSNR[:1], RATE, PSNR))


def test_bd_few_points():
    # 3 points: quadratic fit, still exact for a pure rate scaling
    assert M.bd_rate(RATE[:3], PSNR[:3], RATE[:3] * 0.5, PSNR[:3]) == pytest.approx(-50.0, abs=1e-6)
