"""The Gaussian conditional: latents (û, ẑ, v̂) coded as integers under a Gaussian per element
(mean and scale from a network) or per channel (a factorized prior: the same class with
broadcast parameters). Training takes its bin probability (GaussianConditional.log_prob);
the codec quantizes the mean to a 1/16 grid and picks one of 64 fixed integer tables by the
scale (comparisons only), so encoder and decoder build the same tables on every machine.

Stream layout: symbols grouped by table index (0..63, flat C order within a group), each
group coded with that table's fixed Categorical model; symbol 2R+1 = ESCAPE. Then, for all
escapes in that order: bit length n of (|v| - R) - as uniform over 64, sign (uniform over 2);
then the n low bits of every escape's excess, in uniform chunks of <= 16 bits.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import FormatError
from . import fixedpoint as fp
from .coder import Categorical, Uniform
from .fixedpoint import SCALES

NUM_SCALES = len(SCALES)

_GAUSS_TOTALS = np.array([int(t.sum()) for t in fp.GAUSS_TABLES], dtype=np.int64)
_GAUSS_MODELS: list | None = None
_ESC_LEN_SIZE = 64     # escape magnitude bit-length is coded uniformly over 0..63
_ESC_CHUNK_BITS = 16   # escape mantissa bits are coded in uniform chunks of <= 16 bits
_INT64_MAX = (1 << 63) - 1


def _gauss_models():
    global _GAUSS_MODELS
    if _GAUSS_MODELS is None:
        _GAUSS_MODELS = [Categorical(t.astype(np.float64), perfect=False)
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


def _encode(symbols, scale_idx, coder):
    """Push integer ``symbols`` under the zero-mean Gaussian tables ``scale_idx``.

    Values beyond a table's range are coded as ESCAPE followed (at the end of the
    stream) by the excess magnitude's bit length (uniform over 0..63), sign and mantissa
    bits, so any int64 except -2**63 round-trips losslessly.

    The section is pushed onto ``coder``: sections pushed last are decoded first.
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
    if esc_vals:
        head, head_sizes, chunks, sizes = _escape_payload(esc_vals)
        if chunks.size:
            coder.push(chunks, Uniform(), sizes)
        coder.push(head, Uniform(), head_sizes)
    for s, model in reversed(segments):
        coder.push(s, model)


def _decode(coder, scale_idx) -> np.ndarray:
    """Inverse of _encode: the next section of ``coder``; int64 of ``scale_idx``'s shape."""
    idx = _check_idx(scale_idx)
    shape = idx.shape
    idx = idx.ravel()
    models = _gauss_models()
    order, counts, starts = _gauss_groups(idx)
    out = np.zeros(idx.size, dtype=np.int64)
    esc_pos, esc_r = [], []
    try:
        for i in range(NUM_SCALES):
            n = int(counts[i])
            if n == 0:
                continue
            s = np.asarray(coder.pop(models[i], n), dtype=np.int64)
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
            head = np.asarray(coder.pop(Uniform(), head_sizes), dtype=np.int64)
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
                chunks = np.asarray(coder.pop(Uniform(), np.array(sizes, dtype=np.int32)),
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
    return out.reshape(shape)


_GAUSS_NEGLOG2 = [-np.log2(t.astype(np.float64) / float(t.sum())) for t in fp.GAUSS_TABLES]


def _bits(symbols, scale_idx) -> float:
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




class GaussianConditional:
    """Latents under N(mean, scale²) discretized to bins of width `step` around the mean."""

    @staticmethod
    def log_prob(z, mean, log_scale, step: float = 1.0):
        """Sum of log P(bin of width `step` around z) per batch element (torch): the code length
        of a quantized latent, and the density of z + uniform noise convolved with the bin (Ballé 2018)."""
        scale = torch.exp(log_scale)
        d = (z - mean).abs()  # use the upper tail for precision, as CompressAI does
        upper = torch.special.ndtr((step / 2 - d) / scale)
        lower = torch.special.ndtr((-step / 2 - d) / scale)
        return torch.log(torch.clamp(upper - lower, min=1e-9)).flatten(1).sum(1)

    @staticmethod
    def tables(mean: np.ndarray, scale: np.ndarray, step):
        """The coder's view of float64 means and scales (exact: from the exact path's tables):
        (mean on the 1/16 grid, table index of each element). Symbols are the integers
        round((value - mean) / step); the value decoded is mean + step * symbol."""
        return quantize_mean(mean), scale_index(scale / step)

    encode = staticmethod(_encode)
    decode = staticmethod(_decode)
    bits = staticmethod(_bits)


def log_density(z, mean, log_scale):
    """Sum of log N(z; mean, exp(log_scale)^2) per batch element, nats (the paper's Gaussian posterior)."""
    lp = -0.5 * ((z - mean) * torch.exp(-log_scale)) ** 2 - log_scale - 0.5 * math.log(2 * math.pi)
    return lp.flatten(1).sum(1)


def kl(mean_q, log_scale_q, mean_p, log_scale_p):
    """Analytic KL(N_q || N_p) summed per batch element, nats."""
    var_q, var_p = torch.exp(2 * log_scale_q), torch.exp(2 * log_scale_p)
    kl = log_scale_p - log_scale_q + (var_q + (mean_q - mean_p) ** 2) / (2 * var_p) - 0.5
    return kl.flatten(1).sum(1)
