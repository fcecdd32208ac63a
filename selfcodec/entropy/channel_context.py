"""A channel-wise context for a Gaussian-coded latent (Minnen & Singh, 2020): the latent's
channels are coded in slices, and each slice's mean and scale are the base prior's (û's
hyperprior, or p(ẑ_k | ŷ, the latent below)) plus a correction computed from the base prior
and the slices coded before it. Every slice is then coded by the GaussianConditional like any
latent; the decoder, which has the earlier slices, computes the same corrections.

The corrections run at the latent's resolution (1/16 of x), so they cost little per pixel.
The last layer of each net starts at zero: a model gaining the context starts as it was.
On the exact path the nets run on integer activations (exact.integer_copy), so the tables are
the same on every machine.
"""

import torch
import torch.nn as nn

from .latent_parts import ChannelPart


def slice_sizes(channels: int, slices: int) -> list:
    """Channels per slice, as equal as they can be (the first ones one larger)."""
    base, extra = divmod(channels, slices)
    return [base + (i < extra) for i in range(slices)]


class ChannelContext(nn.Module):
    """`slices` slices of a `channels`-channel latent; nets[i - 1] gives slice i's correction
    from [base mean, base log-scale, slices 0..i-1]."""

    def __init__(self, channels: int, slices: int, width: int):
        super().__init__()
        if not 2 <= slices <= channels:
            raise ValueError(f"a channel context needs 2 to {channels} slices, not {slices}")
        self.sizes = slice_sizes(channels, slices)
        starts = [sum(self.sizes[:i]) for i in range(slices + 1)]
        self.slices = [slice(a, b) for a, b in zip(starts, starts[1:])]
        self.parts = [ChannelPart(s) for s in self.slices]
        self.nets = nn.ModuleList()
        for i in range(1, slices):
            net = nn.Sequential(nn.Conv2d(2 * channels + starts[i], width, 3, padding=1), nn.ReLU(),
                                nn.Conv2d(width, width, 1), nn.ReLU(), nn.Conv2d(width, 2 * self.sizes[i], 1))
            nn.init.zeros_(net[-1].weight)
            nn.init.zeros_(net[-1].bias)
            self.nets.append(net)

    def part_prior(self, i: int, mean, log_scale, known: list, run=None):
        """Slice i's (mean, log_scale) given the base prior and the slices before it (`known`);
        run(net, input) -> its output, in the caller's arithmetic (the exact path's integers)."""
        ch = self.slices[i]
        if i == 0:
            return mean[:, ch], log_scale[:, ch]
        net = self.nets[i - 1]
        x = torch.cat([mean, log_scale, *known], 1)
        d = run(net, x) if run else net(x.to(next(net.parameters()).dtype)).float()
        dm, dls = d.chunk(2, 1)
        return mean[:, ch] + dm, (log_scale[:, ch] + dls).clamp(-6.0, 6.0)

    def join(self, known: list):
        """The whole latent from its slices."""
        return torch.cat(known, 1)
