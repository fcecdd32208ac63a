"""A spatial context for an image the fast family codes exactly (y in cgen, crec and lossless;
x in lossless): each 2x2 block's pixels are coded in three stages (base.STAGE_OF_PHASE: top
left, then top right and bottom left, then bottom right), and each stage's DMoL parameters
get a correction from the pixels coded before it, in its block and the blocks around it
(stage 0: from the features alone, a likelihood head of its own beside the decoder's, whose
means shape x̂ and must not move).

Point estimates (ŷ in rec1 and rec2, x̂) do not use the context: the lossy modes are the
same with or without it.

The nets run at half the image's resolution, one position per 2x2 block: the input is the
decoder's features there (already at that resolution), the known pixels as a space-to-depth
(4 x channels, unknown ones zero) and the coarser image y (for x given y), and the output is
the 4 phases' corrections, which a pixel shuffle spreads back over each block. A 3x3 layer
lets a block see its neighbours' known pixels: in stage 2 the three other pixels of its own
block and of the eight around it.

With `skip`, a linear 3x3 layer from the input adds to each net's output: the linear
predictors of classic lossless coders (a pixel from its neighbours and y) are then one layer
away instead of something the ReLU layers must learn to build.

The last layers start at zero, so a model gaining the context codes as it did. On the exact
path the nets run on integer activations (exact.integer_copy).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


class PixelContext(nn.Module):
    """nets[stage]: [features, known pixels (space-to-depth, zero where unknown), coarser image]
    at half resolution -> 4 x params_ch corrections (pixel-shuffled by the caller)."""

    def __init__(self, feat_ch: int, in_ch: int, params_ch: int, width: int, layers: int, skip: bool = False):
        super().__init__()
        if layers < 1:
            raise ValueError(f"a pixel context needs at least one 3x3 layer, not {layers}")
        self.nets = nn.ModuleList()
        for _ in range(3):
            mods, c = [], feat_ch + in_ch
            for _ in range(layers):
                mods += [nn.Conv2d(c, width, 3, padding=1), nn.ReLU()]
                c = width
            mods += [nn.Conv2d(width, width, 1), nn.ReLU(), nn.Conv2d(width, 4 * params_ch, 1)]
            _zero(mods[-1])
            self.nets.append(nn.Sequential(*mods))
        self.skips = nn.ModuleList(_zero(nn.Conv2d(feat_ch + in_ch, 4 * params_ch, 3, padding=1)) for _ in range(3)) if skip else None

    def forward(self, stage: int, x, phases=None, live=None):
        """The stage's corrections; with `phases` (block positions 0..3), only those phases' are
        kept and the rest are zero: a stage reads its own pixels' parameters alone. The integer
        nets (exact.IntConv) then compute only those rows of their last layers, and the linear
        path beside the first layer in one convolution: each output channel is an exact sum of
        its own, so these are the integers the whole layers give. `live`: the input channels
        that can be nonzero (the pixels not known yet are zeros); the integer nets' first layers
        read only those, the same sums without their zero terms."""
        net = self.nets[stage]
        if phases is None:
            out = net(x)
            return out if self.skips is None else out + self.skips[stage](x)
        n_out = net[-1].out_channels if hasattr(net[-1], "out_channels") else net[-1].w.shape[0]
        keep = torch.tensor([c for c in range(n_out) if c % 4 in phases])  # (pixel_shuffle: channel c*4 + phase)
        integer = hasattr(net[-1], "rows")
        first, last = net[0], net[-1]
        skip = self.skips[stage] if self.skips is not None else None
        if integer:
            last, skip = last.rows(keep), (skip.rows(keep) if skip is not None else None)
            if live is not None:
                x, first, skip = x[:, live], first.cols(live), (skip.cols(live) if skip is not None else None)
        if skip is None:
            out = last(net[1:-1](first(x)))
        else:
            h, linear = _side_by_side([first, skip], x)
            out = last(net[1:-1](h)) + linear
        full = out.new_zeros(out.shape[0], n_out, *out.shape[2:])
        full[:, keep] = out if integer else out[:, keep]
        return full


def _side_by_side(convs, x):
    """[conv(x) for conv in convs] for convolutions of one input, kernel, stride and padding, in
    one convolution (exact.IntConv: its own side_by_side)."""
    if hasattr(convs[0], "side_by_side"):
        return convs[0].side_by_side(convs, x)
    out = F.conv2d(x, torch.cat([c.weight for c in convs]), torch.cat([c.bias for c in convs]),
                   convs[0].stride, convs[0].padding)
    return out.split([c.out_channels for c in convs], 1)


def _zero(conv: nn.Conv2d) -> nn.Conv2d:
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv
