"""The deterministic, discrete transforms y = d(x) of the selfVAE.

Both work on integer images (uint8 values held in any integer or float tensor) and return
integers in 0..255, so y is a discrete variable the codec can send losslessly.
"""

import torch
import torch.nn.functional as F


def downscale(x: torch.Tensor) -> torch.Tensor:
    """2x downscale by the rounded mean of each 2x2 block; x is (B, C, H, W) with even H, W."""
    s = F.avg_pool2d(x.float(), 2) * 4  # exact integer block sums in fp32
    return torch.div(s + 2, 4, rounding_mode="floor")  # round half up, integers only


def sketch(x: torch.Tensor, sigma: float = 2.0) -> torch.Tensor:
    """One-channel pencil sketch: colour dodge of the grey image with its blurred inverse.

    This is the dodge blend the paper's appendix A.6 describes (not OpenCV's domain-transform
    pencilSketch): grey / (1 - blur(1 - grey)), computed on 8-bit integers and rounded.
    """
    x = x.float()
    grey = torch.round((x[:, 0:1] * 299 + x[:, 1:2] * 587 + x[:, 2:3] * 114) / 1000)
    inv = 255 - grey
    radius = int(3 * sigma)
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = (k / k.sum()).to(x.device)
    pad = F.pad(inv, (radius, radius, radius, radius), mode="replicate")
    blur = F.conv2d(pad, k.view(1, 1, 1, -1))
    blur = F.conv2d(blur, k.view(1, 1, -1, 1))
    blur = torch.round(blur)
    out = torch.where(blur >= 255, torch.full_like(grey, 255), torch.clamp(grey * 255 / (255 - blur), max=255))
    return torch.round(out)


TRANSFORMS = {"downscale": (downscale, 2, 3), "sketch": (sketch, 1, 1)}
"""name -> (function, spatial ratio between x and y, channels of y)."""
