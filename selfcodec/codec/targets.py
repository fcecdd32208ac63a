"""Aim at a file size or a PSNR: search the continuous level (plans.as_level's 1/256 grid) for
the file that meets the target best, each probe a full encode.

A file's size and PSNR grow with its level (not strictly: the latents are rounded), so the
search keeps a bracket of grid points around the crossing and probes inside it, by the secant
through the probes nearest the target (log size, or PSNR, are close to linear in the level),
halving the bracket when the secant stalls. It stops at MAX_PROBES encodes, or earlier once a
probe meets the target within SIZE_SLACK (size) or PSNR_SLACK_DB. Torch-free: the probes come
from a callback.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from .plans import LEVEL_DENOM, as_level

MAX_PROBES = 8
SIZE_SLACK = 0.01  # a file at most 1 % under the target size ends the search
PSNR_SLACK_DB = 0.05  # a file at most this far above the target PSNR ends it


@dataclass(eq=False)  # probes are compared by identity
class Probe:
    level: object  # int or Fraction
    size: int
    psnr: float
    report: dict | None = field(repr=False)  # None once it can no longer be chosen


@dataclass
class Aim:
    """The outcome: the chosen probe, every probe in the order made, whether the target was met,
    and a message saying how close the file came when it was not."""
    best: Probe
    probes: list
    met: bool
    message: str = ""


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def aim(encode_at, rgb: np.ndarray, top_level: int, target_size: int | None = None,
        target_psnr: float | None = None, max_probes: int = MAX_PROBES) -> Aim:
    """Search levels 1..top_level. target_size: the largest file of at most that many bytes;
    target_psnr: the smallest file of at least that PSNR (dB, over RGB). encode_at(level) ->
    an encode report (its "data" and "recon"). When no probe meets the target, the closest one
    (the smallest file, or the highest PSNR) is returned with met False."""
    by_size = target_size is not None
    probes: dict[int, Probe] = {}

    def f(p: Probe) -> float:  # increasing in the level; <= 0 where a size target is met, >= 0 a PSNR one
        return math.log(p.size / target_size) if by_size else min(p.psnr, 1e3) - target_psnr

    def probe(i: int) -> Probe:
        level = as_level(Fraction(i, LEVEL_DENOM))
        rep = encode_at(level)
        probes[i] = Probe(level, len(rep["data"]), psnr(rep["recon"], rgb), rep)
        return probes[i]

    def good(p: Probe) -> bool:
        return p.size <= target_size if by_size else p.psnr >= target_psnr

    def close_enough(p: Probe) -> bool:
        if by_size:
            return target_size * (1 - SIZE_SLACK) <= p.size <= target_size
        return target_psnr <= p.psnr <= target_psnr + PSNR_SLACK_DB

    lo, hi = LEVEL_DENOM, top_level * LEVEL_DENOM  # grid points of levels 1 and top_level
    a, b = lo - 1, hi + 1  # the crossing lies strictly between a and b
    last_sides: list = []
    while len(probes) < max_probes and b - a > 1:
        if len(probes) == max_probes - 1 and not any(good(p) for p in probes.values()):
            i = lo if by_size else hi  # last chance: the extreme that is likeliest to meet it
            if i in probes:
                break
        else:
            i = _next(probes, f, a, b, last_sides)
        p = probe(i)
        keep = (_pick(list(probes.values()), good, by_size), _closest(list(probes.values()), by_size))
        for q in probes.values():
            if q not in keep:
                q.report = None  # only the file that may yet be chosen is kept (a large image's arrays are big)
        if close_enough(p):
            break
        side = "a" if f(p) < 0 or (f(p) == 0 and by_size) else "b"
        a, b = (i, b) if side == "a" else (a, i)
        last_sides.append(side)
    order = list(probes.values())
    best = _pick(order, good, by_size)
    if best is not None:
        return Aim(best, order, True)
    best = _closest(order, by_size)
    if by_size:
        why = (f"no file reaches {target_size} bytes: the smallest, at level {_show(best.level)}, has {best.size} "
               f"bytes ({100 * (best.size / target_size - 1):+.1f} %)")
    else:
        why = (f"no file reaches {target_psnr:g} dB: the best, at level {_show(best.level)}, has {best.psnr:.2f} dB "
               f"({best.size} bytes)")
    return Aim(best, order, False, why)


def _pick(probes: list, good, by_size: bool) -> Probe | None:
    """The probe a met target chooses: the largest file under a size, the smallest over a PSNR."""
    met = [p for p in probes if good(p)]
    if not met:
        return None
    return max(met, key=lambda p: p.size) if by_size else min(met, key=lambda p: p.size)


def _closest(probes: list, by_size: bool) -> Probe:
    """The probe a missed target falls back to: the smallest file, or the highest PSNR."""
    return min(probes, key=lambda p: p.size) if by_size else max(probes, key=lambda p: p.psnr)


def _next(probes: dict, f, a: int, b: int, last_sides: list) -> int:
    """The next grid point strictly inside (a, b): the secant through the two probes nearest the
    target, or the middle of the bracket for a first probe or when one side has moved three
    times in a row (the secant is creeping)."""
    mid = (a + b) // 2
    if len(probes) < 2 or last_sides[-3:] in (["a"] * 3, ["b"] * 3):
        return min(max(mid, a + 1), b - 1)
    (i1, p1), (i2, p2) = sorted(probes.items(), key=lambda kv: abs(f(kv[1])))[:2]
    f1, f2 = f(p1), f(p2)
    if f1 == f2:
        return min(max(mid, a + 1), b - 1)
    guess = round(i1 - f1 * (i2 - i1) / (f2 - f1))
    return min(max(guess, a + 1), b - 1)


def _show(level) -> str:
    return f"{float(level):.3f}".rstrip("0").rstrip(".")
