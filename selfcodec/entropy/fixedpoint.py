"""Fixed-point lookup tables for portable entropy coding.

Every table that defines a coding distribution is an array of integers.  The tables are
computed once at import time with ``math.exp`` / ``math.erfc`` (float math), rounded to
integers, and then verified against a SHA-256 digest stored in this file.  If a platform's
libm ever rounded differently enough to change a single integer, the import fails loudly
instead of silently producing bitstreams that other machines cannot decode.

At coding time only IEEE basic operations (+ - * /, comparisons, floor/rint, int<->float
conversions of exactly representable values) and integer arithmetic touch these tables.

Tables
------
``SIGMOID_TABLE``   round(2**SIGMOID_BITS * sigmoid(t)) for t = i/64 - SIGMOID_RANGE,
                    i = 0 .. 2*64*SIGMOID_RANGE (inclusive); ``SIGMOID_DIFF`` the forward
                    differences (last entry 0) for integer linear interpolation.
``EXP_NEG_TABLE``   round(2**EXP_BITS * exp(-m/64)) for m = 0 .. EXP_NEG_MAX (0 at the end);
                    used for softmax weights of logits quantized to 1/64.
``INV_SCALE_TABLE`` round(2**INV_SCALE_BITS * exp(-l/64)) for l = LOG_SCALE_MIN_Q ..
                    LOG_SCALE_MAX_Q (log-scales quantized to 1/64); ``inv_scale(l)`` is
                    that integer divided by 2**INV_SCALE_BITS (exact in float64).
``GAUSS_TABLES``    64 integer pmfs (zero-mean discretized Gaussians at ``SCALES[i]``) over
                    symbols -R_i .. R_i followed by one ESCAPE symbol; counts ~ 2**GAUSS_BITS.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

# --------------------------------------------------------------------------------------
# Constants (part of the bitstream format: changing any of them changes the format)
# --------------------------------------------------------------------------------------

#: Sigmoid argument grid is 1/64; the table spans [-SIGMOID_RANGE, SIGMOID_RANGE].
SIGMOID_GRID = 64
SIGMOID_RANGE = 20
SIGMOID_BITS = 26
#: Fixed-point fraction bits of the sigmoid argument below the 1/64 grid (interpolation).
SIGMOID_FRAC_BITS = 10

#: Logits are quantized to 1/64; softmax weights use exp(-m/64) at EXP_BITS precision.
LOGIT_GRID = 64
EXP_BITS = 30
EXP_NEG_MAX = 64 * 22  # 2**30 * exp(-22) < 0.5, so the table ends in zeros

#: Log-scales are quantized to 1/64 and clamped to [-7, 7].
LOG_SCALE_GRID = 64
LOG_SCALE_MIN_Q = -7 * LOG_SCALE_GRID
LOG_SCALE_MAX_Q = 7 * LOG_SCALE_GRID
INV_SCALE_BITS = 40

#: Gaussian tables: counts are rounded from probabilities times 2**GAUSS_BITS (floor 1).
GAUSS_BITS = 24
#: Table i covers integers |k| <= R_i = max(1, ceil(GAUSS_TAIL_SIGMAS * SCALES[i])).
#: The mass outside +-(R_i + 1/2) is 2*Q(6.5) ~ 8e-11 < 1e-9.
GAUSS_TAIL_SIGMAS = 6.5

#: 64 log-spaced scales from 0.11 to 256 (shipped as literals: the values are part of
#: the format; ``scale_index`` compares against exactly these float64 numbers).
SCALES = np.array([
    0.11, 0.12440410337871262, 0.14069437215874012, 0.1591177928985361,
    0.17995369415583692, 0.20351798155585427, 0.23016792742637654, 0.26030758761831785,
    0.2943939276393863, 0.33294375098286777, 0.37654153469608204, 0.4258482909882771,
    0.48161158923412467, 0.5446768903224373, 0.6160003651969836, 0.6966633919390023,
    0.787888951190402, 0.891060168498511, 1.0077412847140166, 1.1397013723869016,
    1.2889411577389158, 1.4577233548766322, 1.64860697216033, 1.8644861108681825,
    2.108633844405629, 2.384751843339001, 2.697026498648367, 3.0501923941179885,
    3.449604090207429, 3.901317307761771, 4.412180742435963, 4.989939901886986,
    5.6433545400719245, 6.382331469143953, 7.218074762587224, 8.163255626910708,
    9.232204517427787, 10.441128410904577, 11.808356529278063, 13.354618240009122,
    15.103357346484879, 17.081087533615843, 19.317794357752575, 21.847389875732397,
    24.708226805960464, 27.943680017030772, 31.602804160185094, 35.74107741637158,
    40.42124263429875, 45.71425861248477, 51.70037594826147, 58.47035376532569,
    66.12683576737696, 74.78590648101743, 84.57885128304754, 95.65414689699084,
    108.17971253796196, 122.3454558368367, 138.36615214401417, 156.48470086762356,
    176.9758082174797, 200.15015219107795, 226.3590929494899, 256.0,
], dtype=np.float64)
SCALES.setflags(write=False)

# SHA-256 of all integer tables (int64 little-endian, concatenated in the order of
# ``_all_tables``).  Recompute only when deliberately changing the format.
TABLES_SHA256 = "c965182eafcd995af8e4ab03d987dfdc9d1c00f8cce1c3d048665e7097501f9f"


# --------------------------------------------------------------------------------------
# Table construction (float math, once, then rounded to integers and hash-checked)
# --------------------------------------------------------------------------------------

def _round(x: float) -> int:
    return int(math.floor(x + 0.5))


def _sigmoid(t: float) -> float:
    if t >= 0:
        return 1.0 / (1.0 + math.exp(-t))
    e = math.exp(t)
    return e / (1.0 + e)


def _build_sigmoid():
    n = 2 * SIGMOID_GRID * SIGMOID_RANGE + 1
    one = 1 << SIGMOID_BITS
    tab = [_round(one * _sigmoid(i / SIGMOID_GRID - SIGMOID_RANGE)) for i in range(n)]
    tab[0] = 0
    tab[-1] = one
    t = np.array(tab, dtype=np.int64)
    d = np.zeros(n, dtype=np.int64)
    d[:-1] = t[1:] - t[:-1]
    return t, d


def _build_exp_neg():
    one = 1 << EXP_BITS
    return np.array([_round(one * math.exp(-m / LOGIT_GRID)) for m in range(EXP_NEG_MAX + 1)],
                    dtype=np.int64)


def _build_inv_scale():
    one = 1 << INV_SCALE_BITS
    return np.array([_round(one * math.exp(-l / LOG_SCALE_GRID))
                     for l in range(LOG_SCALE_MIN_Q, LOG_SCALE_MAX_Q + 1)], dtype=np.int64)


def _gauss_radius(scale: float) -> int:
    return max(1, int(math.ceil(GAUSS_TAIL_SIGMAS * scale)))


def _build_gauss(scale: float) -> np.ndarray:
    r = _gauss_radius(scale)
    one = 1 << GAUSS_BITS
    c = 1.0 / (scale * math.sqrt(2.0))
    counts = []
    for k in range(0, r + 1):
        lo, hi = abs(k) - 0.5, abs(k) + 0.5
        if k == 0:
            p = math.erf(hi * c)  # P(|X| < 1/2)
        else:
            p = 0.5 * (math.erfc(lo * c) - math.erfc(hi * c))
        counts.append(max(1, _round(p * one)))
    tail = math.erfc((r + 0.5) * c)  # two-sided mass beyond +-(r + 1/2)
    full = counts[:0:-1] + counts + [max(1, _round(tail * one))]
    return np.array(full, dtype=np.int64)


SIGMOID_TABLE, SIGMOID_DIFF = _build_sigmoid()
EXP_NEG_TABLE = _build_exp_neg()
INV_SCALE_TABLE = _build_inv_scale()
GAUSS_RADII = np.array([_gauss_radius(float(s)) for s in SCALES], dtype=np.int64)
GAUSS_TABLES = tuple(_build_gauss(float(s)) for s in SCALES)


def _all_tables():
    return [SIGMOID_TABLE, SIGMOID_DIFF, EXP_NEG_TABLE, INV_SCALE_TABLE, GAUSS_RADII,
            *GAUSS_TABLES]


def tables_digest() -> str:
    h = hashlib.sha256()
    for t in _all_tables():
        h.update(np.ascontiguousarray(t, dtype="<i8").tobytes())
    return h.hexdigest()


def verify_tables() -> None:
    digest = tables_digest()
    if digest != TABLES_SHA256:
        raise RuntimeError(
            "selfcodec fixed-point coding tables do not match the reference digest "
            f"({digest} != {TABLES_SHA256}); this platform's libm differs and bitstreams "
            "would not be portable")


# Float64 views used at coding time (exact: ints < 2**53, power-of-two scaling).
INV_SCALE_F64 = INV_SCALE_TABLE.astype(np.float64) / float(1 << INV_SCALE_BITS)

for _t in _all_tables() + [INV_SCALE_F64]:
    _t.setflags(write=False)

verify_tables()
