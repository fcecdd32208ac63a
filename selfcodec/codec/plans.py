"""What each coding mode sends, by name, without torch: the mode codes a .svae header holds,
the quality levels (whole or fractional, and from a quality 0..100; the targets' values checked),
and the streams of a tile (codec/modes.py, the codec, takes them from here). The command line
checks its options and `selfcodec info` names a file's streams with these, before (or without)
loading torch."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from ..errors import CodecError

MODES = ["rec1", "rec2", "cgen", "crec", "lossless"]  # the user-facing modes (3-level models add *-y1)
MODE_CODES = {"rec1": 1, "rec2": 2, "cgen": 3, "crec": 4, "lossless": 5, "cgen-y1": 6, "crec-y1": 7}
MODE_NAMES = {v: k for k, v in MODE_CODES.items()}
STORED = 8  # the mode code of a lossless file whose pixels are stored, not modelled (codec/stored.py)
LEVELS = [1, 2, 3, 4, 5, 6, 7]  # quality levels (a rate-distortion model may have fewer)
DEFAULT_LEVEL = 3
LEVEL_DENOM = 256  # a fractional level is a whole level plus n/256 (the header's level_frac byte)
QUALITY_RANGE = (0, 100)


@dataclass(frozen=True)
class Plan:
    sent: int  # index of the image sent losslessly; -1: none; K: x itself (lossless)
    send_z: bool


def plan_for(mode: str, levels: int) -> Plan:
    """The paper's four modes (and lossless) for a model with `levels` self-supervised images."""
    K = levels
    plans = {"rec1": Plan(-1, False), "lossless": Plan(K, True)}
    if K >= 1:
        plans.update(rec2=Plan(-1, True), cgen=Plan(K - 1, False), crec=Plan(K - 1, True))
    if K >= 2:
        plans.update({"cgen-y1": Plan(0, False), "crec-y1": Plan(0, True)})
    if mode not in plans:
        raise CodecError(f"mode {mode!r} is not available for this model; choose one of {', '.join(plans)}")
    return plans[mode]


def stream_names(plan: Plan, levels: int) -> list:
    """One stream for all latents (u, then the z's the plan sends), then one per image sent, coarsest first."""
    latents, images = ["u"], []
    for k in range(1, levels + 1):
        if k <= plan.sent or plan.send_z:
            latents.append(f"z{k}" if levels > 1 else "z")
    for k in range(plan.sent + 1):
        images.append("x" if k == levels else (f"y{k + 1}" if levels > 1 else "y"))
    return ["+".join(latents)] + images


# ---- fractional levels, quality 0..100 and targets: checked here, before torch loads ----------

def as_level(value) -> int | Fraction:
    """A level as the codec takes it: a whole level stays an int (its files keep their bytes), any
    other number becomes a Fraction on the 1/256 grid (rounded to the nearest); CodecError for
    anything outside LEVELS' range (a model may have fewer levels: it says so when it loads)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Fraction)):
        raise CodecError(f"level must be a number, not {type(value).__name__}")
    if not LEVELS[0] <= value <= LEVELS[-1]:  # NaN fails this too
        raise CodecError(f"level {float(value):g} does not exist; choose a level from {LEVELS[0]} to {LEVELS[-1]} "
                         f"(fractions too, e.g. 3.5)")
    snapped = Fraction(round(Fraction(value) * LEVEL_DENOM), LEVEL_DENOM)
    return int(snapped) if snapped.denominator == 1 else snapped


def level_parts(level) -> tuple[int, int]:
    """(whole level, numerator of the fraction over LEVEL_DENOM) of a level from as_level."""
    whole = int(level)  # floor: levels are positive
    return whole, int((Fraction(level) - whole) * LEVEL_DENOM)


def check_quality(quality) -> None:
    lo, hi = QUALITY_RANGE
    if isinstance(quality, bool) or not isinstance(quality, (int, float)) or not lo <= quality <= hi:
        raise CodecError(f"quality must be a number from {lo} to {hi}, not {quality!r}")


def level_for_quality(quality, n_levels: int) -> int | Fraction:
    """Quality 0..100 -> a level of a model with n_levels levels: linear, 0 the lowest level (1),
    100 the highest (n_levels), on the 1/256 grid; monotone, so a search over it is a search over levels."""
    check_quality(quality)
    return as_level(1 + Fraction(quality) * (n_levels - 1) / 100) if n_levels > 1 else 1


def quality_for_level(level, n_levels: int) -> float:
    """level_for_quality's inverse (for messages)."""
    return 0.0 if n_levels <= 1 else float((Fraction(level) - 1) * 100 / (n_levels - 1))


def check_target(target_size=None, target_psnr=None) -> None:
    """A target must be a positive size in bytes or a PSNR in dB above 0 (and at most one is given)."""
    if target_size is not None and target_psnr is not None:
        raise CodecError("give target_size or target_psnr, not both")
    if target_size is not None and (isinstance(target_size, bool) or not isinstance(target_size, int) or target_size < 1):
        raise CodecError(f"target size must be a whole number of bytes, 1 or more, not {target_size!r}")
    if target_psnr is not None and (isinstance(target_psnr, bool) or not isinstance(target_psnr, (int, float))
                                    or not 0 < target_psnr < 200):
        raise CodecError(f"target PSNR must be a number of dB above 0 (e.g. 32), not {target_psnr!r}")
