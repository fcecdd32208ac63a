"""A checkerboard context for a Gaussian-coded latent (He et al., 2021): half the latent's
positions (the anchors, where row + column is even) are coded under the base prior (û's
hyperprior, or p(ẑ_k | ŷ, the latent below)); the other half's mean and scale are the base
prior's plus a correction computed from the decoded anchors around them. Two parts, whatever
the latent's size, so decoding stays two passes of the entropy coder.

The net runs at the latent's resolution (1/16 of x), over the whole image (a tiled walk sees
the anchors across tile borders). Its last layer starts at zero: a model gaining the context
starts as it was. On the exact path it runs on integer activations (exact.integer_copy).
"""

import torch
import torch.nn as nn

from .latent_parts import CheckerPart

ANCHORS = CheckerPart(((0, 0), (1, 1)))
OTHERS = CheckerPart(((0, 1), (1, 0)))


class CheckerboardContext(nn.Module):
    """The anchors, then the other positions corrected by `net` from [base mean, base
    log-scale, the anchors (zero elsewhere)]."""

    parts = (ANCHORS, OTHERS)

    def __init__(self, channels: int, width: int):
        super().__init__()
        net = nn.Sequential(nn.Conv2d(3 * channels, width, 3, padding=1), nn.ReLU(),
                            nn.Conv2d(width, width, 1), nn.ReLU(), nn.Conv2d(width, 2 * channels, 1))
        nn.init.zeros_(net[-1].weight)
        nn.init.zeros_(net[-1].bias)
        self.nets = nn.ModuleList([net])  # as a channel context's: one net

    def part_prior(self, i: int, mean, log_scale, known: list, run=None):
        """Part i's (mean, log_scale), laid out as the part, given the base prior and the parts
        before it (`known`, as the parts lay them out); run(net, input) -> its output, in the
        caller's arithmetic (the exact path's integers)."""
        if mean.shape[-2] % 2 or mean.shape[-1] % 2:
            raise ValueError(f"a checkerboard context needs a latent of even sides, not {tuple(mean.shape[-2:])}")
        if i == 0:
            return ANCHORS.of(mean), ANCHORS.of(log_scale)
        anchors = ANCHORS.put(known[0], known[0].new_zeros((known[0].shape[0], mean.shape[1], *mean.shape[-2:])))
        x = torch.cat([mean, log_scale, anchors], 1)
        net = self.nets[0]
        d = run(net, x) if run else net(x.to(next(net.parameters()).dtype)).float()
        dm, dls = d.chunk(2, 1)
        return OTHERS.of(mean + dm), OTHERS.of((log_scale + dls).clamp(-6.0, 6.0))

    def join(self, known: list):
        """The whole latent from its two parts."""
        a = known[0]
        out = a.new_zeros((a.shape[0], a.shape[1] // 2, 2 * a.shape[-2], 2 * a.shape[-1]))
        return OTHERS.put(known[1], ANCHORS.put(a, out))
