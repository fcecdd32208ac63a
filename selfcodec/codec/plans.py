"""What each coding mode sends, by name, without torch: the mode codes a .svae header holds,
the quality levels, and the streams of a tile (codec/modes.py, the codec, takes them from here).
The command line checks its options and
`selfcodec info` names a file's streams with these, before (or without) loading torch."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import CodecError

MODES = ["rec1", "rec2", "cgen", "crec", "lossless"]  # the user-facing modes (3-level models add *-y1)
MODE_CODES = {"rec1": 1, "rec2": 2, "cgen": 3, "crec": 4, "lossless": 5, "cgen-y1": 6, "crec-y1": 7}
MODE_NAMES = {v: k for k, v in MODE_CODES.items()}
LEVELS = [1, 2, 3, 4, 5, 6, 7]  # quality levels (a rate-distortion model may have fewer)
DEFAULT_LEVEL = 3


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
