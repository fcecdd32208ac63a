"""Tests of the portable entropy models (selfcodec.entropy): the Gaussian conditional's and the
DMoL's coding, tables and size estimates, through the stream-level calls below."""

import hashlib

import numpy as np
import pytest

from selfcodec.entropy import fixedpoint as fp
from selfcodec.entropy import gaussian
from selfcodec.entropy.coder import Coder
from selfcodec.entropy.dmol import DMoL
from selfcodec.entropy.gaussian import GaussianConditional
from selfcodec.errors import FormatError


class S:
    """One stream per call, or a section of a shared Coder: the entropy models' operations as
    the codec uses them."""

    SCALES, scale_index, quantize_mean = gaussian.SCALES, gaussian.scale_index, gaussian.quantize_mean
    bin_values, num_bins, section_coder = DMoL.bin_values, DMoL.num_bins, Coder
    gaussian_bits, dmol_pmf = GaussianConditional.bits, staticmethod(lambda v, *a, step=1: DMoL.pmf(v, a, step))

    @staticmethod
    def finish(coder):
        return coder.to_bytes()

    @staticmethod
    def check_done(coder):
        coder.check_done()

    @staticmethod
    def gaussian_encode(symbols, scale_idx, coder=None):
        own = coder is None
        coder = Coder() if own else coder
        GaussianConditional.encode(symbols, scale_idx, coder)
        return coder.to_bytes() if own else None

    @staticmethod
    def gaussian_decode(data, scale_idx):
        coder = Coder(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
        out = GaussianConditional.decode(coder, scale_idx)
        if coder is not data:
            coder.check_done()
        return out

    @staticmethod
    def dmol_encode(values, *arrays, step=1):
        coder = Coder()
        DMoL.encode(coder, values, arrays, step)
        return coder.to_bytes()

    @staticmethod
    def dmol_decode(data, *arrays, step=1):
        coder = Coder(data)
        out = DMoL.decode(coder, arrays, step)
        coder.check_done()
        return out

    @staticmethod
    def dmol_push(coder, values, *arrays, step=1):
        DMoL.encode(coder, values, arrays, step)

    @staticmethod
    def dmol_pop(coder, *arrays, step=1):
        return DMoL.decode(coder, arrays, step)

    @staticmethod
    def dmol_bits(values, *arrays, step=1):
        return DMoL.bits(values, arrays, step)

    @staticmethod
    def dmol_push_ranged(coder, values, lo, hi, *arrays):
        DMoL.encode_ranged(coder, values, lo, hi, arrays)

    @staticmethod
    def dmol_pop_ranged(coder, lo, hi, *arrays):
        return DMoL.decode_ranged(coder, lo, hi, arrays)

    @staticmethod
    def dmol_bits_ranged(values, lo, hi, *arrays):
        return DMoL.bits_ranged(values, lo, hi, arrays)


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------

def _dmol_params(rng, n, c, k, extreme=False, dtype=np.float64):
    logits = rng.normal(size=(n, k)) * 3
    means = rng.uniform(-1.3, 1.3, size=(n, c, k))
    log_scales = rng.uniform(-6, 0.5, size=(n, c, k))
    coeffs = np.tanh(rng.normal(size=(n, c * (c - 1) // 2, k)))
    if extreme:
        log_scales[::3] = -7.0
        log_scales[1::5] = 3.0
        log_scales[2::7] = -9.0      # below the clamp
        means[::4] = rng.uniform(-4, 4, size=means[::4].shape)
        logits[::6, 0] = 60.0        # one dominating component
        logits[1::6] = -40.0         # all equal, very negative
        coeffs[::5] = np.sign(coeffs[::5])
    return tuple(a.astype(dtype) for a in (logits, means, log_scales, coeffs))


def _values_near_means(rng, means, log_scales):
    n, c, _ = means.shape
    x = means[:, :, 0] + np.exp(np.clip(log_scales[:, :, 0], -7, 3)) * rng.logistic(size=(n, c))
    return np.clip(np.rint((x + 1) * 127.5), 0, 255).astype(np.uint8)


def _away_from_rounding_boundaries(params):
    """Move each parameter at least 0.1 grid step away from a rounding boundary.

    A value within an ulp of a boundary between two grid cells may legitimately quantize
    differently after a 1-ulp change (that case is caught by checksums elsewhere); every
    other value must quantize identically.
    """
    out = []
    for a, grid in zip(params, (64.0, 1024.0, 64.0, 1024.0)):
        q = np.rint(a * grid)
        out.append((q + np.clip(a * grid - q, -0.4, 0.4)) / grid)
    return tuple(out)


def _ulp_perturb(rng, arrays):
    out = []
    for a in arrays:
        direction = np.where(rng.random(a.shape) < 0.5, -np.inf, np.inf).astype(a.dtype)
        out.append(np.nextafter(a, direction))
    return tuple(out)


# --------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------

def test_tables_verified_and_integer():
    fp.verify_tables()
    assert fp.tables_digest() == fp.TABLES_SHA256
    assert fp.SIGMOID_TABLE.dtype == np.int64
    assert np.all(np.diff(fp.SIGMOID_TABLE) >= 0)
    assert fp.SIGMOID_TABLE[0] == 0 and fp.SIGMOID_TABLE[-1] == 1 << fp.SIGMOID_BITS
    for t in fp.GAUSS_TABLES:
        assert t.min() >= 1
    assert len(S.SCALES) == 64 and S.SCALES[0] == 0.11 and S.SCALES[-1] == 256.0
    assert np.all(np.diff(S.SCALES) > 0)


def test_scale_index():
    sig = np.array([0.0, 0.05, 0.11, 0.1100001, 1.0, S.SCALES[10], 255.9, 256.0, 1e9, np.nan])
    idx = S.scale_index(sig)
    assert idx.dtype == np.int64
    assert list(idx[:3]) == [0, 0, 0]
    assert idx[5] == 10
    assert idx[7] == 63 and idx[8] == 63 and idx[9] == 63
    rng = np.random.default_rng(1)
    s = np.exp(rng.uniform(np.log(0.05), np.log(300), 1000))
    i = S.scale_index(s)
    ok = s <= 256.0
    assert np.all(S.SCALES[i[ok]] >= s[ok])
    j = i[ok & (i > 0)]
    assert np.all(S.SCALES[j - 1] < s[ok & (i > 0)])


def test_quantize_mean():
    q = S.quantize_mean(np.array([0.03, 0.031250001, -1.47, 5.0]))
    assert np.all(q * 16 == np.rint(q * 16))
    assert q[0] == 0.0 and q[3] == 5.0


# --------------------------------------------------------------------------------------
# Gaussian conditional
# --------------------------------------------------------------------------------------

def test_gaussian_roundtrip_all_tables_with_escapes():
    rng = np.random.default_rng(2)
    idx = np.repeat(np.arange(64), 40)
    rng.shuffle(idx)
    sym = np.rint(rng.normal(size=idx.size) * S.SCALES[idx] * 1.5).astype(np.int64)
    r = fp.GAUSS_RADII[idx]
    sym[:64] = r[:64] + 1            # just outside each table
    sym[64:128] = -r[64:128] - 1
    sym[128:136] = [2 ** 62, -(2 ** 62), 2 ** 63 - 1, -(2 ** 63 - 1), 10 ** 9, -10 ** 12, 12345, -3]
    data = S.gaussian_encode(sym, idx)
    assert isinstance(data, bytes) and len(data) % 4 == 0
    out = S.gaussian_decode(data, idx)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, sym)


def test_gaussian_shapes_and_empty():
    idx = np.arange(24).reshape(2, 3, 4) % 64
    sym = (np.arange(24).reshape(2, 3, 4) - 12)
    out = S.gaussian_decode(S.gaussian_encode(sym, idx), idx)
    assert out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, sym)
    empty = np.zeros((0,), dtype=np.int64)
    data = S.gaussian_encode(empty, empty)
    assert S.gaussian_decode(data, empty).shape == (0,)
    with pytest.raises(ValueError):
        S.gaussian_encode(np.array([1, 2]), np.array([0, 64]))


def test_gaussian_size_matches_estimate():
    rng = np.random.default_rng(3)
    n = 20000
    sigma = np.exp(rng.uniform(np.log(0.1), np.log(40), n))
    idx = S.scale_index(sigma)
    sym = np.rint(rng.normal(size=n) * sigma).astype(np.int64)
    sym[:10] = 10 ** 6                # a few escapes
    est = S.gaussian_bits(sym, idx)
    real = 8 * len(S.gaussian_encode(sym, idx))
    assert abs(real - est) <= 0.01 * est + 64


def test_latent_sections_share_one_stream_and_an_idle_latent_costs_no_word():
    rng = np.random.default_rng(5)
    idx_u = rng.integers(20, 64, 500)
    sym_u = np.rint(rng.normal(size=500) * S.SCALES[idx_u]).astype(np.int64)
    sym_u[:3] = [10 ** 7, -(10 ** 9), 5]  # escapes inside a section that is not the last
    idx_z = np.zeros(2000, dtype=np.int64)  # the narrowest table: z carries (almost) nothing
    sym_z = np.zeros(2000, dtype=np.int64)
    coder = S.section_coder()
    S.gaussian_encode(sym_z, idx_z, coder)  # decoded second, so pushed first
    S.gaussian_encode(sym_u, idx_u, coder)
    data = S.finish(coder)
    alone = S.gaussian_encode(sym_u, idx_u)
    assert len(data) == len(alone)  # 2000 near-certain symbols add 0.016 bits, not a 4-byte word
    est = S.gaussian_bits(sym_u, idx_u) + S.gaussian_bits(sym_z, idx_z)
    assert abs(8 * len(data) - est) <= 0.01 * est + 64
    dec = S.section_coder(data)
    np.testing.assert_array_equal(S.gaussian_decode(dec, idx_u), sym_u)
    np.testing.assert_array_equal(S.gaussian_decode(dec, idx_z), sym_z)
    S.check_done(dec)
    dec = S.section_coder(data)
    S.gaussian_decode(dec, idx_u)
    with pytest.raises(FormatError):  # a section left unread is data left over
        S.check_done(dec)


def test_gaussian_corrupt_streams_raise_or_return():
    rng = np.random.default_rng(4)
    idx = rng.integers(0, 64, 3000)
    sym = np.rint(rng.normal(size=3000) * S.SCALES[idx]).astype(np.int64)
    sym[:3] = [10 ** 9, -7 * 10 ** 15, 2 ** 40]
    data = S.gaussian_encode(sym, idx)
    for trial in range(40):
        b = bytearray(data)
        if trial % 4 == 0:
            b = b[: rng.integers(0, len(b))]
        elif trial % 4 == 1:
            b = b + bytes(rng.integers(0, 256, rng.integers(1, 9), dtype=np.uint8))
        else:
            for _ in range(rng.integers(1, 4)):
                b[rng.integers(0, len(b))] ^= 1 << int(rng.integers(0, 8))
        try:
            out = S.gaussian_decode(bytes(b), idx)
        except FormatError:
            continue
        assert out.shape == idx.shape


# --------------------------------------------------------------------------------------
# DMoL
# --------------------------------------------------------------------------------------

def test_bin_values():
    v = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(S.bin_values(v, 1), v)
    r3 = S.bin_values(v, 3)
    assert r3[0] == 1 and r3[2] == 1 and r3[3] == 4 and r3[255] == 255
    r4 = S.bin_values(v, 4)
    assert r4[0] == 1 and r4[3] == 1 and r4[252] == 253 and r4[255] == 253
    assert S.num_bins(3) == 86 and S.num_bins(4) == 64
    assert S.bin_values(np.array([255], np.uint8), 7)[0] == (252 + 255) // 2


@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("step", [1, 3, 4])
def test_dmol_roundtrip(c, step):
    rng = np.random.default_rng(10 * c + step)
    n, k = 600, 5
    params = _dmol_params(rng, n, c, k, extreme=True)
    values = _values_near_means(rng, params[1], params[2])
    values[::11] = rng.integers(0, 256, size=values[::11].shape)   # unlikely values too
    values[0] = 0
    values[1] = 255
    data = S.dmol_encode(values, *params, step=step)
    out = S.dmol_decode(data, *params, step=step)
    assert out.dtype == np.uint8 and out.shape == (n, c)
    np.testing.assert_array_equal(out, S.bin_values(values, step))


def test_dmol_pmf_normalized_and_positive():
    rng = np.random.default_rng(11)
    for c, step in [(1, 1), (3, 1), (3, 3), (3, 4), (1, 16)]:
        params = _dmol_params(rng, 300, c, 4, extreme=True)
        values = rng.integers(0, 256, size=(300, c)).astype(np.uint8)
        pmf = S.dmol_pmf(values, *params, step=step)
        assert pmf.shape == (300, c, S.num_bins(step))
        assert np.all(pmf > 0)
        np.testing.assert_allclose(pmf.sum(axis=-1), 1.0, rtol=0, atol=1e-9)
        # dmol_bits is -log2 of the same pmf at the coded bins
        b = values.astype(np.int64) // step
        ref = -np.log2(np.take_along_axis(pmf, b[:, :, None], axis=2)).sum()
        assert abs(S.dmol_bits(values, *params, step=step) - ref) < 1e-6 * ref


def test_dmol_pmf_matches_logistic_mixture():
    # the fixed-point model approximates the float PixelCNN++ likelihood closely
    rng = np.random.default_rng(12)
    n, k = 50, 3
    logits, means, log_scales, _ = _dmol_params(rng, n, 1, k)
    log_scales = np.clip(log_scales, -4, 0)
    # put the parameters on the quantization grids so only the fixed-point error remains
    logits, log_scales = np.rint(logits * 64) / 64, np.rint(log_scales * 64) / 64
    means = np.rint(means * 1024) / 1024
    values = np.zeros((n, 1), np.uint8)
    pmf = S.dmol_pmf(values, logits, means, log_scales, None)[:, 0]
    edges = (2.0 * np.arange(257) - 256) / 255
    t = (edges[None, None, :] - means[:, 0, :, None]) / np.exp(log_scales[:, 0, :, None])
    cdf = 1 / (1 + np.exp(-t))
    cdf[..., 0], cdf[..., -1] = 0, 1
    w = np.exp(logits - logits.max(1, keepdims=True))
    w /= w.sum(1, keepdims=True)
    ref = np.einsum("nk,nke->ne", w, np.diff(cdf, axis=-1))
    assert np.abs(pmf - ref).max() < 1e-4  # mostly the 2**-22 per-bin floor
    big = ref > 1e-4
    assert np.abs(np.log2(pmf[big] / ref[big])).max() < 1e-2
    # expected coding overhead (cross-entropy - entropy) under the float model
    kl = np.sum(np.where(ref > 0, ref * np.log2(np.maximum(ref, 1e-300) / pmf), 0.0), axis=1)
    assert kl.max() < 1e-3


def test_dmol_later_channels_follow_the_joint_mixture():
    """Channel 1 is coded under the joint mixture's p(x_1 | x_0): each component's weight times
    its probability of the coded x_0, renormalized (the model's likelihood), not under the
    prior weights."""
    rng = np.random.default_rng(17)
    n, k = 40, 3
    logits, means, log_scales, coeffs = _dmol_params(rng, n, 3, k)
    logits, log_scales = np.rint(logits * 64) / 64, np.rint(np.clip(log_scales, -4, 0) * 64) / 64
    means, coeffs = np.rint(means * 1024) / 1024, np.rint(coeffs * 1024) / 1024
    values = _values_near_means(rng, means, log_scales)
    pmf = S.dmol_pmf(values, logits, means, log_scales, coeffs)[:, 1]
    edges = (2.0 * np.arange(257) - 256) / 255

    def bins(mu, ls):  # (n, k, 256) bin probabilities of each component
        cdf = 1 / (1 + np.exp(-(edges[None, None, :] - mu[:, :, None]) / np.exp(ls[:, :, None])))
        cdf[..., 0], cdf[..., -1] = 0, 1
        return np.diff(cdf, axis=-1)

    w = np.exp(logits - logits.max(1, keepdims=True))
    w /= w.sum(1, keepdims=True)
    x0 = values[:, 0].astype(np.int64)
    p0 = bins(means[:, 0], log_scales[:, 0])[np.arange(n), :, x0]  # (n, k)
    mu1 = means[:, 1] + coeffs[:, 0] * ((2.0 * x0 - 255) / 255)[:, None]
    post = w * p0 / (w * p0).sum(1, keepdims=True)
    ref = np.einsum("nk,nke->ne", post, bins(mu1, log_scales[:, 1]))
    prior = np.einsum("nk,nke->ne", w, bins(mu1, log_scales[:, 1]))
    assert np.abs(pmf - ref).max() < 5e-4  # fixed-point sigmoids and the 2**-22 floor
    assert np.abs(prior - ref).max() > 0.05  # the two differ, so this test tells them apart


def test_dmol_size_matches_estimate():
    rng = np.random.default_rng(13)
    n, c, k = 7000, 3, 10
    params = _dmol_params(rng, n, c, k)
    params = (params[0], params[1], np.clip(params[2], -5, -1.5), params[3])
    values = _values_near_means(rng, params[1], params[2])
    for step in (1, 4):
        est = S.dmol_bits(values, *params, step=step)
        real = 8 * len(S.dmol_encode(values, *params, step=step))
        assert abs(real - est) <= 0.01 * est + 64, (step, real, est)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dmol_decodes_with_ulp_perturbed_params(dtype):
    rng = np.random.default_rng(14)
    n, c, k = 800, 3, 4
    params = _away_from_rounding_boundaries(_dmol_params(rng, n, c, k, extreme=True))
    values = _values_near_means(rng, params[1], params[2])
    params = tuple(a.astype(dtype) for a in params)
    data = S.dmol_encode(values, *params, step=1)
    perturbed = _ulp_perturb(rng, params)
    assert any(not np.array_equal(a, b) for a, b in zip(params, perturbed))
    np.testing.assert_array_equal(S.dmol_decode(data, *perturbed, step=1), values)
    data3 = S.dmol_encode(values, *params, step=3)
    np.testing.assert_array_equal(S.dmol_decode(data3, *perturbed, step=3),
                                  S.bin_values(values, 3))


def test_dmol_corrupt_streams_raise_or_return():
    rng = np.random.default_rng(15)
    n, c, k = 300, 3, 3
    params = _dmol_params(rng, n, c, k)
    values = _values_near_means(rng, params[1], params[2])
    data = S.dmol_encode(values, *params)
    for trial in range(30):
        b = bytearray(data)
        if trial % 3 == 0:
            b = b[: rng.integers(0, len(b))]
        else:
            b[rng.integers(0, len(b))] ^= 1 << int(rng.integers(0, 8))
        try:
            out = S.dmol_decode(bytes(b), *params)
        except FormatError:
            continue
        assert out.shape == (n, c) and out.dtype == np.uint8
    with pytest.raises(FormatError):
        S.dmol_decode(b"abc", *params)


def _ranges(rng, values):
    """Ranges of 1 to 4 values around each value, clipped to 0..255."""
    lo = np.clip(values.astype(np.int64) - rng.integers(0, 4, values.shape), 0, 255)
    hi = np.minimum(lo + rng.integers(0, 4, values.shape), 255)
    hi = np.maximum(hi, values)
    return np.maximum(lo, hi - 3), hi


def test_dmol_ranged_section_after_a_full_one_roundtrips():
    rng = np.random.default_rng(5)
    n, c, k = 3000, 3, 5  # > one chunk
    params = _dmol_params(rng, n, c, k, extreme=True)
    values = _values_near_means(rng, params[1], params[2])
    values[::13] = rng.integers(0, 256, size=values[::13].shape)
    values[0], values[1] = 0, 255
    lo, hi = _ranges(rng, values)
    first = _values_near_means(rng, params[1], params[2])
    coder = S.section_coder()
    S.dmol_push_ranged(coder, values, lo, hi, *params)  # decoded second: pushed first
    S.dmol_push(coder, first, *params)
    data = S.finish(coder)
    dec = S.section_coder(data)
    np.testing.assert_array_equal(S.dmol_pop(dec, *params), first)
    np.testing.assert_array_equal(S.dmol_pop_ranged(dec, lo, hi, *params), values)
    S.check_done(dec)
    est = S.dmol_bits(first, *params) + S.dmol_bits_ranged(values, lo, hi, *params)
    assert abs(8 * len(data) - est) < 0.01 * est + 64
    # a range of one value costs nothing; four values at most two bits each
    assert S.dmol_bits_ranged(values, values, values, *params) < 1e-3
    assert S.dmol_bits_ranged(values, lo, hi, *params) < 2 * n * c


def test_dmol_ranged_rejects_bad_ranges_and_corrupt_data():
    rng = np.random.default_rng(6)
    n, c, k = 50, 3, 4
    params = _dmol_params(rng, n, c, k)
    values = _values_near_means(rng, params[1], params[2])
    lo, hi = _ranges(rng, values)
    for bad_lo, bad_hi in ((lo, lo + 4), (hi + 1, hi), (lo - 256, hi)):
        with pytest.raises(ValueError):
            S.dmol_pop_ranged(S.section_coder(b"\x01\x00\x00\x00"), bad_lo, bad_hi, *params)
    with pytest.raises(ValueError):
        S.dmol_push_ranged(S.section_coder(), values, np.minimum(values.astype(np.int64) + 1, 255),
                           np.minimum(values.astype(np.int64) + 1, 255), *params)
    coder = S.section_coder()
    S.dmol_push_ranged(coder, values, lo, hi, *params)
    data = bytearray(S.finish(coder))
    data[0] ^= 0xFF
    try:
        out = S.dmol_pop_ranged(S.section_coder(bytes(data)), lo, hi, *params)
    except FormatError:
        return
    assert np.all(out >= lo) and np.all(out <= hi)  # garbage, but never outside the range


def test_dmol_trivial_single_bin():
    rng = np.random.default_rng(16)
    params = _dmol_params(rng, 10, 3, 2)
    values = rng.integers(0, 256, (10, 3)).astype(np.uint8)
    data = S.dmol_encode(values, *params, step=256)
    np.testing.assert_array_equal(S.dmol_decode(data, *params, step=256),
                                  S.bin_values(values, 256))


# --------------------------------------------------------------------------------------
# golden bitstreams: inputs from exact arithmetic only, so any platform must reproduce
# these bytes exactly (this is what catches a non-portable table or operation)
# --------------------------------------------------------------------------------------

def _golden_inputs():
    n, c, k = 257, 3, 4
    i = np.arange(n, dtype=np.float64)[:, None]
    kk = np.arange(k, dtype=np.float64)[None, :]
    logits = ((i * 7 + kk * 13) % 50 - 25) / 8
    ch = np.arange(c, dtype=np.float64)[None, :, None]
    means = ((i[:, :, None] * 3 + ch * 29 + kk[:, None, :] * 17) % 240 - 120) / 100.0
    log_scales = ((i[:, :, None] * 5 + ch * 11 + kk[:, None, :] * 3) % 90) / 10.0 - 7.5
    coeffs = ((i[:, :, None] + ch * 7 + kk[:, None, :] * 5) % 21 - 10) / 10.0
    values = ((np.arange(n)[:, None] * 37 + np.arange(c)[None, :] * 91) % 256).astype(np.uint8)
    return values, logits, means, log_scales, coeffs


def _digest(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()[:32]


def test_golden_dmol_bitstream():
    values, *params = _golden_inputs()
    d1 = _digest(S.dmol_encode(values, *params, step=1))
    d3 = _digest(S.dmol_encode(values, *params, step=3))
    lo = np.maximum(values.astype(np.int64) - np.arange(len(values))[:, None] % 4, 0)
    coder = S.section_coder()
    S.dmol_push_ranged(coder, values, lo, np.minimum(lo + 3, 255), *params)
    assert (d1, d3, _digest(S.finish(coder))) == GOLDEN_DMOL


def test_golden_gaussian_bitstream():
    idx = np.arange(1000) % 64
    sym = ((np.arange(1000) * 7919) % 41) - 20
    sym[::97] *= 1000
    assert _digest(S.gaussian_encode(sym, idx)) == GOLDEN_GAUSS


GOLDEN_DMOL = ("f3cdd015156ea362e4b5cca8d7c513f2", "d69ea84d6dc41971d0996fa0dfc6acd0", "132bd7633f945e1a7957400b131295bd")
GOLDEN_GAUSS = "f46afb6b177f4fcef3f6afabbefa6c16"


def test_dmol_encode_returns_the_bits_it_codes():
    """DMoL.encode and encode_ranged return -log2 of what they push: DMoL.bits' figure (the
    encoder reports it per stream without a second pass over the tables)."""
    rng = np.random.default_rng(3)
    n, c, k = 700, 3, 4
    arrays = _dmol_params(rng, n, c, k, extreme=True)
    v = rng.integers(0, 256, (n, c)).astype(np.uint8)
    for step in (1, 4):
        assert DMoL.encode(Coder(), v, arrays, step) == pytest.approx(DMoL.bits(v, arrays, step), rel=1e-12)
    lo = np.clip(v.astype(np.int64) - 1, 0, 252)
    hi = lo + 3
    assert DMoL.encode_ranged(Coder(), v, lo, hi, arrays) == pytest.approx(DMoL.bits_ranged(v, lo, hi, arrays), rel=1e-12)
