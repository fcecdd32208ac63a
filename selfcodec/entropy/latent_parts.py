"""The parts a latent is coded in, one after another, under a latent context
(chain.by_slices): each part knows how to take itself out of a tensor laid out as the latent
(values, prior means and scales, quantization steps) and the context joins the parts back.

A part's tensors are ordinary (B, C', h', w') tensors, so every walker codes a part as it
codes a whole latent, and a tiled walk crops a part like any variable at its own scale.
"""

import numpy as np
import torch


def _cat(ts):
    return np.concatenate(ts, 1) if isinstance(ts[0], np.ndarray) else torch.cat(ts, 1)


def _per_channel(step) -> bool:
    """Whether a quantization step is per channel ((B, C, 1, 1) arrays), not one number."""
    return getattr(step, "ndim", 0) > 0


class WholePart:
    """The whole latent in one part (a model without a context)."""

    def of(self, t):
        return t

    def step(self, step):
        return step


class ChannelPart:
    """Channels `sl` of the latent (a channel-wise context's slice)."""

    def __init__(self, sl: slice):
        self.channels = sl

    def of(self, t):
        return t[:, self.channels]

    def step(self, step):
        return step[:, self.channels] if _per_channel(step) else step


class CheckerPart:
    """Half the latent's positions, a checkerboard's colour: the 2x2 phases (row, column) in
    `phases`, side by side in channels, so the part is (B, 2C, h/2, w/2) (h and w even). A
    tiled walk crops it at twice the latent's scale, which falls on the same elements because
    tiles start at even latent positions."""

    def __init__(self, phases: tuple):
        self.phases = phases

    def of(self, t):
        return _cat([t[..., a::2, b::2] for a, b in self.phases])

    def step(self, step):
        return _cat([step] * len(self.phases)) if _per_channel(step) else step

    def put(self, part, out):
        """Writes this part's values (as `of` laid them out) into `out`, the whole latent."""
        for (a, b), values in zip(self.phases, part.chunk(len(self.phases), 1)):
            out[..., a::2, b::2] = values
        return out
