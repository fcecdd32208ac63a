"""Portable entropy coding of latents (Gaussian conditional) and pixels (DMoL).

Everything here is designed for *exact, portable* decoding: encoder and decoder, possibly
on different machines, build bit-identical probability tables.  No transcendental
function is evaluated on any value that defines a coding table at coding time:

* every network output is first quantized to a fixed grid (``np.rint(x * 2**k)``, exact),
* transcendental functions are read from integer lookup tables
  (:mod:`selfcodec.coding.fixedpoint`, hash-verified at import),
* the remaining arithmetic is IEEE basic operations (each exactly rounded; numpy never
  fuses them) and integer arithmetic,
* the probabilities handed to constriction are float64 numbers holding exact integers
  (< 2**53), so their sums are exact in any order.

Entropy coder: constriction 0.5 rANS (``constriction.stream.stack.AnsCoder``, 32-bit words,
24-bit probabilities) with ``Categorical(..., perfect=False)`` on both sides.  A bitstream is
the coder's uint32 words serialised little-endian; each call produces one bitstream.

Quantization grids (part of the format)
---------------------------------------
Gaussian:  ``scale_index`` picks the smallest of the 64 ``SCALES`` >= sigma (comparisons).
           Means are the caller's business (``quantize_mean`` offers a 1/16 grid).
DMoL:      logits      -> 1/64   (clamped to +-2**24)
           means       -> 1/1024 (clamped to [-16, 16])
           log_scales  -> 1/64   (clamped to [-7, 7])
           coeffs      -> 1/1024 (clamped to [-4, 4]; they are tanh'ed so |c| <= 1)
           softmax weights: exp(-(max - l)) from a 2**30 table, normalised to 2**22 (ints)
           sigmoid argument t = (edge - mean) * inv_scale in float64 basic ops, then
           fixed point with 16 fractional bits; sigmoid from a 1/64-grid table of 26-bit
           integers over [-20, 20] with integer linear interpolation.
           Mixture CDF = sum_k w_k * sigmoid_k (integer, < 2**48); every bin gets an
           extra floor of 2**26 (~2**-22 of the total) so every value stays codable.

Stream layouts
--------------
Gaussian:  symbols grouped by table index (0..63, flat C order within a group), each
           group coded with that table's fixed Categorical model; symbol 2R+1 = ESCAPE.
           Then, for all escapes in that order: bit length n of (|v| - R) - as uniform
           over 64, sign (uniform over 2); then the n low bits of every escape's excess, in
           uniform chunks of <= 16 bits. Several such sections can share one stream
           (``section_coder``): the one decoded first is pushed last.
DMoL:      pixels in chunks of ``_CHUNK``; within a chunk channel by channel, each channel
           after the first under the mixture weights conditioned on the earlier channels'
           coded bins (``_Params.observe``: w_k * P_k(bin), renormalized in integers); a channel
           with nb = ceil(256/step) bins is coded in two stages when nb > 32 (group of
           g = ceil(sqrt(nb)) bins, then the bin within the group; e.g. 16 x 16 for
           step 1), so only ~2*sqrt(nb) CDF values per component and pixel are needed.
           Both stages use the same integer CDF, so P(group) * P(bin | group) == P(bin).
DMoL in a range (``dmol_push_ranged``): each value known to lie in [lo, hi] (at most 4
           values) is coded as value - lo, one stage, from the same integer CDF at the edges
           lo .. hi + 1 (values above hi get no mass).
"""

from __future__ import annotations

import math

import numpy as np
import constriction

from selfcodec.errors import FormatError
from selfcodec.coding import fixedpoint as fp
from selfcodec.coding.fixedpoint import SCALES

__all__ = [
    "SCALES", "NUM_SCALES", "scale_index", "quantize_mean",
    "gaussian_encode", "gaussian_decode", "gaussian_bits", "finish", "check_done",
    "section_coder", "bin_values", "num_bins", "dmol_encode", "dmol_decode", "dmol_bits", "dmol_pmf",
    "dmol_push", "dmol_pop", "dmol_push_ranged", "dmol_pop_ranged", "dmol_bits_ranged",
]

NUM_SCALES = len(SCALES)

_Categorical = constriction.stream.model.Categorical
_Uniform = constriction.stream.model.Uniform
_AnsCoder = constriction.stream.stack.AnsCoder


# --------------------------------------------------------------------------------------
# Bitstream helpers
# --------------------------------------------------------------------------------------

def _to_bytes(coder) -> bytes:
    words = np.asarray(coder.get_compressed(), dtype=np.uint32)
    return words.astype("<u4", copy=False).tobytes()


def _from_bytes(data) -> "_AnsCoder":
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError("bitstream must be bytes")
    data = bytes(data)
    if len(data) % 4:
        raise FormatError("entropy-coded section has a length that is not a multiple of 4")
    words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
    try:
        return _AnsCoder(words)
    except Exception as exc:  # constriction raises ValueError on e.g. a trailing zero word
        raise FormatError(f"corrupt entropy-coded section: {exc}") from None


def _check_consumed(coder) -> None:
    if not coder.is_empty():
        raise FormatError("corrupt entropy-coded section: data left after decoding")


# --------------------------------------------------------------------------------------
# Gaussian conditional
# --------------------------------------------------------------------------------------

_GAUSS_TOTALS = np.array([int(t.sum()) for t in fp.GAUSS_TABLES], dtype=np.int64)
_GAUSS_MODELS: list | None = None
_ESC_LEN_SIZE = 64     # escape magnitude bit-length is coded uniformly over 0..63
_ESC_CHUNK_BITS = 16   # escape mantissa bits are coded in uniform chunks of <= 16 bits
_INT64_MAX = (1 << 63) - 1


def _gauss_models():
    global _GAUSS_MODELS
    if _GAUSS_MODELS is None:
        _GAUSS_MODELS = [_Categorical(t.astype(np.float64), perfect=False)
                         for t in fp.GAUSS_TABLES]
    return _GAUSS_MODELS


def scale_index(sigma) -> np.ndarray:
    """Smallest table index whose scale is >= sigma (comparisons only; clipped to 63)."""
    s = np.asarray(sigma, dtype=np.float64)
    idx = np.searchsorted(SCALES, s, side="left")  # NaN sorts last -> 64 -> clipped
    return np.minimum(idx, NUM_SCALES - 1).astype(np.int64)


def quantize_mean(mean) -> np.ndarray:
    """Round means to the 1/16 grid (exact: scaling by 16 is a power of two)."""
    m = np.asarray(mean, dtype=np.float64)
    return np.rint(m * 16.0) / 16.0


def _as_int64(x, what: str) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind in "iu":
        if a.dtype == np.uint64 and a.size and a.max() > np.uint64(_INT64_MAX):
            raise ValueError(f"{what} out of int64 range")
        return a.astype(np.int64)
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or not np.all(a == np.rint(a)):
            raise ValueError(f"{what} must be integers")
        if a.size and np.max(np.abs(a)) >= 2.0 ** 63:
            raise ValueError(f"{what} out of int64 range")
        return a.astype(np.int64)
    if a.dtype == bool:
        return a.astype(np.int64)
    raise TypeError(f"{what} must be an integer array")


def _check_idx(scale_idx) -> np.ndarray:
    idx = _as_int64(scale_idx, "scale_idx")
    if idx.size and (idx.min() < 0 or idx.max() >= NUM_SCALES):
        raise ValueError("scale_idx must be in [0, 63]")
    return idx


def _gauss_groups(idx_flat):
    order = np.argsort(idx_flat, kind="stable")
    counts = np.bincount(idx_flat, minlength=NUM_SCALES)
    starts = np.concatenate([[0], np.cumsum(counts)])
    return order, counts, starts


def _escape_payload(esc_vals):
    """Escape payload symbols and uniform sizes, in decode order."""
    lens, signs, chunks, sizes = [], [], [], []
    for v, r in esc_vals:
        a = abs(v) - r
        n = a.bit_length() - 1
        lens.append(n)
        signs.append(1 if v < 0 else 0)
        mant = a - (1 << n)
        done = 0
        while done < n:
            b = min(_ESC_CHUNK_BITS, n - done)
            chunks.append((mant >> done) & ((1 << b) - 1))
            sizes.append(1 << b)
            done += b
    head = np.array(lens + signs, dtype=np.int32)
    head_sizes = np.array([_ESC_LEN_SIZE] * len(lens) + [2] * len(signs), dtype=np.int32)
    return head, head_sizes, np.array(chunks, dtype=np.int32), np.array(sizes, dtype=np.int32)


def gaussian_encode(symbols, scale_idx, coder=None):
    """Code integer ``symbols`` with the zero-mean Gaussian tables ``scale_idx``.

    Values beyond a table's range are coded as ESCAPE followed (at the end of the
    stream) by the excess magnitude's bit length (uniform over 0..63), sign and mantissa
    bits, so any int64 except -2**63 round-trips losslessly.

    Returns the bitstream, or with ``coder`` (a :func:`section_coder`) pushes the section
    onto it and returns None: sections pushed last are decoded first.
    """
    sym = _as_int64(symbols, "symbols")
    idx = _check_idx(scale_idx)
    if sym.shape != idx.shape:
        raise ValueError(f"symbols shape {sym.shape} != scale_idx shape {idx.shape}")
    sym = sym.ravel()
    idx = idx.ravel()
    if sym.size and sym.min() == np.iinfo(np.int64).min:
        raise ValueError("symbol -2**63 cannot be coded")
    models = _gauss_models()
    order, counts, starts = _gauss_groups(idx)
    segments = []  # (symbols int32, model) in decode order
    esc_vals = []
    for i in range(NUM_SCALES):
        if counts[i] == 0:
            continue
        vals = sym[order[starts[i]:starts[i + 1]]]
        r = int(fp.GAUSS_RADII[i])
        esc = np.abs(vals) > r
        s = np.where(esc, 2 * r + 1, vals + r).astype(np.int32)
        segments.append((s, models[i]))
        if esc.any():
            esc_vals.extend((int(v), r) for v in vals[esc])
    own = coder is None
    if own:
        coder = _AnsCoder()
    if esc_vals:
        head, head_sizes, chunks, sizes = _escape_payload(esc_vals)
        if chunks.size:
            coder.encode_reverse(chunks, _Uniform(), sizes)
        coder.encode_reverse(head, _Uniform(), head_sizes)
    for s, model in reversed(segments):
        coder.encode_reverse(s, model)
    return _to_bytes(coder) if own else None


def section_coder(data: bytes | None = None):
    """A coder that holds several sections (Gaussian or DMoL) in one bitstream (empty to
    encode, or read from ``data``); finish encoding with :func:`finish` and decoding with
    :func:`check_done`. The section decoded first is pushed last. One stream for all latents
    of a tile saves each latent its own final coder word, which is most of the size of a
    latent that carries (almost) nothing."""
    return _AnsCoder() if data is None else _from_bytes(data)


def finish(coder) -> bytes:
    return _to_bytes(coder)


def check_done(coder) -> None:
    _check_consumed(coder)


def gaussian_decode(data, scale_idx) -> np.ndarray:
    """Inverse of :func:`gaussian_encode`; returns int64 of ``scale_idx``'s shape. ``data``
    is a bitstream, or a :func:`section_coder` to take the next section from (then the caller
    checks that the coder is used up)."""
    idx = _check_idx(scale_idx)
    shape = idx.shape
    idx = idx.ravel()
    own = isinstance(data, (bytes, bytearray, memoryview))
    coder = _from_bytes(data) if own else data
    models = _gauss_models()
    order, counts, starts = _gauss_groups(idx)
    out = np.zeros(idx.size, dtype=np.int64)
    esc_pos, esc_r = [], []
    try:
        for i in range(NUM_SCALES):
            n = int(counts[i])
            if n == 0:
                continue
            s = np.asarray(coder.decode(models[i], n), dtype=np.int64)
            r = int(fp.GAUSS_RADII[i])
            pos = order[starts[i]:starts[i + 1]]
            out[pos] = s - r
            esc = s == 2 * r + 1
            if esc.any():
                esc_pos.extend(pos[esc].tolist())
                esc_r.extend([r] * int(esc.sum()))
        if esc_pos:
            e = len(esc_pos)
            head_sizes = np.array([_ESC_LEN_SIZE] * e + [2] * e, dtype=np.int32)
            head = np.asarray(coder.decode(_Uniform(), head_sizes), dtype=np.int64)
            lens, signs = head[:e].tolist(), head[e:].tolist()
            sizes = []
            for n in lens:
                done = 0
                while done < n:
                    b = min(_ESC_CHUNK_BITS, n - done)
                    sizes.append(1 << b)
                    done += b
            chunks = []
            if sizes:
                chunks = np.asarray(coder.decode(_Uniform(), np.array(sizes, dtype=np.int32)),
                                    dtype=np.int64).tolist()
            k = 0
            for p, r, n, sg in zip(esc_pos, esc_r, lens, signs):
                mant, done = 0, 0
                while done < n:
                    b = min(_ESC_CHUNK_BITS, n - done)
                    mant |= int(chunks[k]) << done
                    k += 1
                    done += b
                mag = r + (1 << n) + mant
                if mag > _INT64_MAX:
                    raise FormatError("corrupt entropy-coded section: escape overflow")
                out[p] = -mag if sg else mag
    except FormatError:
        raise
    except Exception as exc:
        raise FormatError(f"corrupt entropy-coded section: {exc}") from None
    if own:
        _check_consumed(coder)
    return out.reshape(shape)


_GAUSS_NEGLOG2 = [-np.log2(t.astype(np.float64) / float(t.sum())) for t in fp.GAUSS_TABLES]


def gaussian_bits(symbols, scale_idx) -> float:
    """Sum of -log2 P(symbol) under the exact integer tables (+ escape payload bits)."""
    sym = _as_int64(symbols, "symbols").ravel()
    idx = _check_idx(scale_idx).ravel()
    if sym.shape != idx.shape:
        raise ValueError("symbols and scale_idx differ in size")
    total = 0.0
    r = fp.GAUSS_RADII[idx]
    esc = np.abs(sym) > r
    s = np.where(esc, 2 * r + 1, sym + r)
    for i in np.unique(idx):
        m = idx == i
        total += float(_GAUSS_NEGLOG2[i][s[m]].sum())
    if esc.any():
        for v, rr in zip(sym[esc].tolist(), r[esc].tolist()):
            n = (abs(v) - rr).bit_length() - 1
            total += math.log2(_ESC_LEN_SIZE) + 1 + n
    return total


# --------------------------------------------------------------------------------------
# Discretized logistic mixture (PixelCNN++ parameterization)
# --------------------------------------------------------------------------------------

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
    return np.matmul(w[:, None, :], _sigmoids(e, mu, beta).astype(np.float64))[:, 0, :]


def _cdf_at(j, mu, beta, p: _Params, step: int, nb: int) -> np.ndarray:
    """Floored integer CDF (exact float64) at bin boundaries j (n|1, E), clipped to [0, nb]."""
    j = np.minimum(j, nb)
    e = _EDGE_X[np.minimum(j * step, 256)]
    f = _mix_cdf(e, mu, beta, p.w)
    f = np.where(j == 0, 0.0, f)
    f = np.where(j == nb, p.top[:, None], f)
    return f + j * _EPS


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
    return logits, means, log_scales, coeffs, values, n, c


_FAMILY = None


def _family():
    global _FAMILY
    if _FAMILY is None:
        _FAMILY = _Categorical(perfect=False)
    return _FAMILY


def dmol_encode(values, logits, means, log_scales, coeffs, step: int = 1) -> bytes:
    """Entropy-code uint8 ``values`` (N, C) under the DMoL; returns one bitstream.

    With ``step`` > 1 the bins ``[b*step, b*step+step-1]`` are coded (lossy); the decoder
    returns ``bin_values(values, step)`` and the RGB coupling uses those representatives.
    """
    coder = _AnsCoder()
    dmol_push(coder, values, logits, means, log_scales, coeffs, step)
    return _to_bytes(coder)


def dmol_decode(data, logits, means, log_scales, coeffs, step: int = 1) -> np.ndarray:
    """Inverse of :func:`dmol_encode`; returns uint8 (N, C) (representatives if step > 1)."""
    coder = _from_bytes(data)
    out = dmol_pop(coder, logits, means, log_scales, coeffs, step)
    _check_consumed(coder)
    return out


def dmol_push(coder, values, logits, means, log_scales, coeffs, step: int = 1) -> None:
    """Push the section :func:`dmol_encode` writes onto a :func:`section_coder`."""
    step = _check_step(step)
    logits, means, log_scales, coeffs, values, n, c = _check_dmol(
        logits, means, log_scales, coeffs, values)
    nb = (256 + step - 1) // step
    g, ng = _layout(nb)
    bins = values.astype(np.int64) // step
    xs_all = _VAL_X[_reps(step)[bins]]
    fam = _family()
    starts = list(range(0, n, _CHUNK))
    for lo in reversed(starts):
        hi = min(n, lo + _CHUNK)
        p = _Params(logits, means, log_scales, coeffs, lo, hi)
        segs = []  # in decode order
        for ch in range(c):
            beta = p.beta[:, ch, :]
            mu = p.channel_mean(ch, [xs_all[lo:hi, j] for j in range(ch)])
            b = bins[lo:hi, ch]
            probs_c, cdf_c = _channel_tables(p, mu, beta, step, nb)
            if probs_c is not None:
                grp = b // g
                segs.append(((grp).astype(np.int32), probs_c))
                segs.append(((b - grp * g).astype(np.int32),
                             _fine_tables(p, mu, beta, step, nb, grp, cdf_c)))
            elif nb > 1:
                segs.append((b.astype(np.int32), _fine_tables(p, mu, beta, step, nb, None, None)))
            if ch + 1 < c:
                p.observe(mu, beta, b, step, nb)
        for s, pr in reversed(segs):
            if nb > 1:  # a single bin carries no information
                coder.encode_reverse(s, fam, pr)


def dmol_pop(coder, logits, means, log_scales, coeffs, step: int = 1) -> np.ndarray:
    """Take the next :func:`dmol_push` section from a :func:`section_coder`."""
    step = _check_step(step)
    logits, means, log_scales, coeffs, _, n, c = _check_dmol(logits, means, log_scales, coeffs)
    nb = (256 + step - 1) // step
    g, ng = _layout(nb)
    reps = _reps(step)
    out = np.zeros((n, c), dtype=np.uint8)
    fam = _family()
    try:
        for lo in range(0, n, _CHUNK):
            hi = min(n, lo + _CHUNK)
            p = _Params(logits, means, log_scales, coeffs, lo, hi)
            xs = []
            for ch in range(c):
                beta = p.beta[:, ch, :]
                mu = p.channel_mean(ch, xs)
                probs_c, cdf_c = _channel_tables(p, mu, beta, step, nb)
                if nb == 1:
                    b = np.zeros(hi - lo, dtype=np.int64)
                elif probs_c is not None:
                    grp = np.asarray(coder.decode(fam, probs_c), dtype=np.int64)
                    fine = np.asarray(coder.decode(fam, _fine_tables(p, mu, beta, step, nb, grp, cdf_c)),
                                      dtype=np.int64)
                    b = grp * g + fine
                else:
                    b = np.asarray(coder.decode(fam, _fine_tables(p, mu, beta, step, nb, None, None)),
                                   dtype=np.int64)
                np.clip(b, 0, nb - 1, out=b)  # padded (zero-mass) bins: only on corruption
                r = reps[b]
                out[lo:hi, ch] = r
                xs.append(_VAL_X[r])
                if ch + 1 < c:
                    p.observe(mu, beta, b, step, nb)
    except FormatError:
        raise
    except Exception as exc:
        raise FormatError(f"corrupt entropy-coded section: {exc}") from None
    return out


# Values in a known range [lo, hi] of at most _RANGE values (the last pixel of a 2x2 block
# whose rounded mean the decoder knows): each channel's mixture, coupled with the pixel's
# earlier channels, restricted to the range and coded as value - lo in one stage.
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


def _range_iter(values, lo, hi, arrays, value):
    """(chunk start, chunk end, channel, probabilities, lo, hi of the chunk's channel) in decode
    order; ``value(start, end, ch)`` gives the values (ints) of channel ch once it is coded (the
    later channels' coupling and mixture weights read them)."""
    logits, means, log_scales, coeffs, values, n, c = _check_dmol(*arrays, values)
    lo, hi = _check_range(lo, hi, n, c, values)
    for a in range(0, n, _CHUNK):
        b = min(n, a + _CHUNK)
        p = _Params(logits, means, log_scales, coeffs, a, b)
        xs = []
        for ch in range(c):
            mu = p.channel_mean(ch, xs)
            yield a, b, ch, _range_probs(p, mu, p.beta[:, ch, :], lo[a:b, ch], hi[a:b, ch]), lo[a:b, ch], hi[a:b, ch]
            if ch + 1 < c:
                v = value(a, b, ch)
                p.observe(mu, p.beta[:, ch, :], v, 1, 256)
                xs.append(_VAL_X[v])


def _range_symbols(values, lo, hi, arrays):
    """(symbols value - lo, probabilities) per chunk and channel in decode order, for known
    values (the encoder's and the size estimate's view of _range_iter)."""
    v = np.asarray(values, dtype=np.int64)
    for a, b, ch, pr, lo_, _ in _range_iter(values, lo, hi, arrays, lambda a, b, j: v[a:b, j]):
        yield v[a:b, ch] - lo_, pr


def dmol_push_ranged(coder, values, lo, hi, logits, means, log_scales, coeffs) -> None:
    """Push uint8 ``values`` (N, C), each known to lie in [lo, hi] (int arrays (N, C), at most
    4 values), onto a :func:`section_coder`."""
    segs = list(_range_symbols(values, lo, hi, (logits, means, log_scales, coeffs)))
    fam = _family()
    for s, pr in reversed(segs):
        coder.encode_reverse(s.astype(np.int32), fam, pr)


def dmol_pop_ranged(coder, lo, hi, logits, means, log_scales, coeffs) -> np.ndarray:
    """Take the next :func:`dmol_push_ranged` section; returns uint8 (N, C)."""
    n, c = np.asarray(means).shape[:2]
    lo, hi = _check_range(lo, hi, n, c)  # the caller's error, not the file's: before the try
    out = np.zeros((n, c), dtype=np.int64)
    fam = _family()
    try:
        for a, b, ch, pr, lo_, hi_ in _range_iter(None, lo, hi, (logits, means, log_scales, coeffs),
                                                  lambda a, b, j: out[a:b, j]):
            s = np.asarray(coder.decode(fam, pr), dtype=np.int64)
            out[a:b, ch] = np.minimum(lo_ + s, hi_)  # beyond hi (zero mass): only on corruption
    except FormatError:
        raise
    except Exception as exc:
        raise FormatError(f"corrupt entropy-coded section: {exc}") from None
    return out.astype(np.uint8)


def dmol_bits_ranged(values, lo, hi, logits, means, log_scales, coeffs) -> float:
    """-log2 of the probabilities :func:`dmol_push_ranged` codes ``values`` with."""
    return sum(float(np.sum(np.log2(pr.sum(1)) - np.log2(pr[np.arange(len(s)), s])))
               for s, pr in _range_symbols(values, lo, hi, (logits, means, log_scales, coeffs)))


def _dmol_iter(values, logits, means, log_scales, coeffs, step, edges_fn):
    step = _check_step(step)
    logits, means, log_scales, coeffs, values, n, c = _check_dmol(
        logits, means, log_scales, coeffs, values)
    nb = (256 + step - 1) // step
    bins = values.astype(np.int64) // step
    xs_all = _VAL_X[_reps(step)[bins]]
    for lo in range(0, n, _CHUNK):
        hi = min(n, lo + _CHUNK)
        p = _Params(logits, means, log_scales, coeffs, lo, hi)
        for ch in range(c):
            beta = p.beta[:, ch, :]
            mu = p.channel_mean(ch, [xs_all[lo:hi, j] for j in range(ch)])
            j = edges_fn(bins[lo:hi, ch], nb)
            cdf = _cdf_at(j, mu, beta, p, step, nb)
            total = p.top + nb * _EPS
            yield lo, hi, ch, cdf, total
            if ch + 1 < c:
                p.observe(mu, beta, bins[lo:hi, ch], step, nb)


def dmol_bits(values, logits, means, log_scales, coeffs, step: int = 1) -> float:
    """Sum of -log2 P(bin) under the exact fixed-point model (what the coder approximates)."""
    bits = 0.0
    for _, _, _, cdf, total in _dmol_iter(values, logits, means, log_scales, coeffs, step,
                                         lambda b, nb: np.stack([b, b + 1], axis=1)):
        bits += float(np.sum(np.log2(total) - np.log2(cdf[:, 1] - cdf[:, 0])))
    return bits


def dmol_pmf(values, logits, means, log_scales, coeffs, step: int = 1) -> np.ndarray:
    """Full pmfs (N, C, num_bins(step)) float64 that the coder uses for each pixel/channel.

    ``values`` (uint8 (N, C)) is needed only for the RGB coupling of channels > 0 (its
    representatives ``bin_values(values, step)`` are used, as in the decoder).
    """
    values = np.asarray(values)
    n = values.shape[0]
    c = values.shape[1] if values.ndim == 2 else 0
    nb = num_bins(step)
    out = np.empty((n, c, nb), dtype=np.float64)
    for lo, hi, ch, cdf, total in _dmol_iter(
            values, logits, means, log_scales, coeffs, step,
            lambda b, nb: np.arange(nb + 1, dtype=np.int64)[None, :]):
        out[lo:hi, ch] = np.diff(cdf, axis=1) / total[:, None]
    return out
