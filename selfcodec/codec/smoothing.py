"""Decoder-side edge-preserving smoothing of x̂: a bilateral filter (OpenCV's) whose range sigma
the model's config gives per mode and quality level (Config.smooth).

Why: the decoders turn the latents' rounding error into fine noise (the colour speckle on flat
glass and sky); averaging each pixel with its like-valued neighbours within 4 pixels removes
much of it and keeps edges, and at the tuned strength raises PSNR too (rec2 of the default on
BSDS500 val: +0.22 to +0.25 dB at levels 1-3, +0.17 at 4, +0.06 at 7). It shapes x̂ only, no coding
table: encoder and decoder run the same call on the same x̂, each pixel's sum in a fixed order
(the same for any thread count and any window holding its 4-pixel neighbourhood)."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from ..errors import CodecError
from . import plans as P

DIAMETER = 9  # pixels: each output averages a disc of radius 4
SPACE_SIGMA = 3.0  # pixels
CHROMA_MEDIAN = 5  # side of the median taken of the chroma (luma kept) where the smoothing is strong
CHROMA_FROM = 20.0  # range sigma from which it is: the low levels, where the speckle is coloured dots


def sigma_at(model, plan: P.Plan, level) -> float:
    """The range sigma (0..255 levels) for x̂ of `plan` at `level` (a fraction between two levels:
    linear between theirs); 0: no smoothing (lossless, or a model without the table)."""
    table = getattr(model.cfg, "smooth", None) or {}
    row = table.get(_mode_of(plan, model.cfg.scales))
    if not row or plan.sent >= model.cfg.scales:
        return 0.0
    whole, frac = P.level_parts(level)
    lo = float(row[min(whole, len(row)) - 1])
    hi = float(row[min(whole + 1, len(row)) - 1])
    return lo + (hi - lo) * frac / P.LEVEL_DENOM


def _mode_of(plan: P.Plan, levels: int) -> str | None:
    for name in P.MODES:
        try:
            if P.plan_for(name, levels) == plan:
                return name
        except CodecError:  # a mode this model lacks
            continue
    return None


def smooth(model, plan: P.Plan, level, x: torch.Tensor) -> torch.Tensor:
    """x̂ (1, 3, H, W) float, 0..255 -> the same smoothed as the model's table says (x itself where
    it says nothing)."""
    sigma = sigma_at(model, plan, level)
    return filtered(x, sigma) if sigma > 0 else x


def filtered(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """x (1, 3, H, W) under the bilateral filter of range sigma (and, from CHROMA_FROM, a median of
    its chroma); rounded to whole levels first, as the tables were tuned on decoded images."""
    pixels = x[0].detach().float().clamp(0, 255).round().permute(1, 2, 0).contiguous().cpu().numpy()
    out = cv2.bilateralFilter(pixels, DIAMETER, float(sigma), SPACE_SIGMA)
    if sigma >= CHROMA_FROM:
        out = chroma_median(out)
    return torch.from_numpy(np.ascontiguousarray(out)).permute(2, 0, 1)[None].to(x.device)


def chroma_median(rgb: np.ndarray) -> np.ndarray:
    """float32 (H, W, 3) with its colour differences from the luma (BT.601), R - Y and B - Y, each
    the median of its CHROMA_MEDIAN x CHROMA_MEDIAN neighbourhood, and the luma kept: the bilateral
    filter keeps a coloured dot that differs from its neighbours by more than its range, this
    turns its colour into theirs (PSNR alike: +0.002 to -0.006 dB at rec2's levels 1-3 on BSDS500
    val). Elementwise arithmetic only, so every pixel is computed the same in any window."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = np.float32(0.299) * r + np.float32(0.587) * g + np.float32(0.114) * b
    dr = cv2.medianBlur(np.ascontiguousarray(r - y), CHROMA_MEDIAN)
    db = cv2.medianBlur(np.ascontiguousarray(b - y), CHROMA_MEDIAN)
    r2, b2 = y + dr, y + db
    g2 = (y - np.float32(0.299) * r2 - np.float32(0.114) * b2) / np.float32(0.587)
    return np.stack([r2, g2, b2], axis=-1)
