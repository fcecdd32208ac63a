"""Building blocks from the paper's appendix A.3: weight-normalised convolutions with
data-dependent initialisation, DenseNet blocks with channel attention, ELU activations,
strided convolutions down and transposed convolutions up."""

import torch
import torch.nn as nn
import torch.nn.functional as F


class _WeightNorm(nn.Module):
    """Shared weight-norm logic: w = g * v / |v| per output channel, plus a bias.

    With `self.ddi` set, the next forward pass rescales g and b so that the outputs have zero
    mean and unit variance per channel on that batch (Salimans & Kingma, 2016).
    """

    out_dim = 0  # axis of the output channels in the weight tensor

    def _init_wn(self, weight: torch.Tensor, init_scale: float):
        self.v = nn.Parameter(weight)
        n_out = weight.shape[self.out_dim]
        self.g = nn.Parameter(torch.ones(n_out))
        self.b = nn.Parameter(torch.zeros(n_out))
        self.init_scale = init_scale
        self.ddi = False

    def weight(self) -> torch.Tensor:
        dims = [d for d in range(self.v.dim()) if d != self.out_dim]
        norm = torch.sqrt((self.v.float() ** 2).sum(dim=dims, keepdim=True) + 1e-12)
        shape = [1] * self.v.dim()
        shape[self.out_dim] = -1
        return (self.v / norm.to(self.v.dtype)) * self.g.view(shape)

    def forward(self, x):
        if self.ddi:
            with torch.no_grad():
                self.g.fill_(1.0)
                self.b.zero_()
                out = self._op(x, self.weight(), None).float()
                mean = out.mean(dim=(0, 2, 3))
                std = out.std(dim=(0, 2, 3)) + 1e-6
                self.g.copy_(self.init_scale / std)
                self.b.copy_(-mean * self.init_scale / std)
            self.ddi = False
        return self._op(x, self.weight(), self.b)


class WNConv2d(_WeightNorm):
    def __init__(self, cin, cout, k=3, stride=1, init_scale=1.0):
        super().__init__()
        self.stride, self.pad = stride, (k - 1) // 2
        self._init_wn(torch.randn(cout, cin, k, k) * 0.05, init_scale)

    def _op(self, x, w, b):
        return F.conv2d(x, w, b, stride=self.stride, padding=self.pad)


class WNConvT2d(_WeightNorm):
    """2x upsampling: a transposed 4x4 convolution with stride 2 (exact 2x size)."""

    out_dim = 1

    def __init__(self, cin, cout, init_scale=1.0):
        super().__init__()
        self._init_wn(torch.randn(cin, cout, 4, 4) * 0.05, init_scale)

    def _op(self, x, w, b):
        return F.conv_transpose2d(x, w, b, stride=2, padding=1)


def data_dependent_init(model: nn.Module, *args, **kwargs):
    """Run one forward pass that sets every weight-norm layer's g and b from the batch."""
    for m in model.modules():
        if isinstance(m, _WeightNorm):
            m.ddi = True
    with torch.no_grad():
        out = model(*args, **kwargs)
    for m in model.modules():
        if isinstance(m, _WeightNorm):
            m.ddi = False
    return out


class ChannelAttention(nn.Module):
    """Squeeze-and-excite gate (Zhang et al., 2018): global average pool, bottleneck, sigmoid."""

    def __init__(self, ch, reduction=4):
        super().__init__()
        hidden = max(ch // reduction, 4)
        self.fc1 = nn.Conv2d(ch, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, ch, 1)

    def forward(self, x):
        s = x.mean(dim=(2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(F.elu(self.fc1(s))))


class DenseBlock(nn.Module):
    """DenseNet block: each layer sees all earlier features; a 1x1 conv fuses them back to
    `ch` channels, channel attention recalibrates, and a residual connection keeps it stable."""

    def __init__(self, ch, growth, layers):
        super().__init__()
        self.layers = nn.ModuleList(WNConv2d(ch + i * growth, growth, 3) for i in range(layers))
        self.fuse = WNConv2d(ch + layers * growth, ch, 1, init_scale=0.1)
        self.ca = ChannelAttention(ch)

    def forward(self, x):
        feats = [x]
        for layer in self.layers:
            feats.append(F.elu(layer(torch.cat(feats, 1))))
        return x + self.ca(self.fuse(torch.cat(feats, 1)))


class Down(nn.Module):
    """`steps` times: strided conv (2x down) + ELU + dense block."""

    def __init__(self, cin, ch, steps, growth, layers):
        super().__init__()
        self.stem = WNConv2d(cin, ch, 3)
        mods = []
        for _ in range(steps):
            mods += [WNConv2d(ch, ch, 3, stride=2), nn.ELU(), DenseBlock(ch, growth, layers)]
        if not steps:
            mods.append(DenseBlock(ch, growth, layers))
        self.body = nn.Sequential(*mods)

    def forward(self, x):
        return self.body(F.elu(self.stem(x)))


class Up(nn.Module):
    """`steps` times: dense block + transposed conv (2x up) + ELU."""

    def __init__(self, ch, steps, growth, layers):
        super().__init__()
        mods = []
        for _ in range(steps):
            mods += [DenseBlock(ch, growth, layers), WNConvT2d(ch, ch), nn.ELU()]
        self.body = nn.Sequential(*mods)

    def forward(self, x):
        return self.body(x)


def scale_image(v: torch.Tensor) -> torch.Tensor:
    """Integer pixels 0..255 -> network input in [-1, 1]."""
    return v / 127.5 - 1.0
