"""RealNVP (Dinh et al., 2016) made convolutional, as the prior p(u) of the selfVAE.

Affine couplings alternate checkerboard and channel masks; the coupling networks are small
convolutional nets, so the flow works on a latent of any height and width.
"""

import math

import torch
import torch.nn as nn

from .blocks import WNConv2d


def checkerboard(h: int, w: int, parity: int, device=None) -> torch.Tensor:
    i = torch.arange(h, device=device).view(-1, 1)
    j = torch.arange(w, device=device).view(1, -1)
    return (((i + j) % 2) == parity).float().view(1, 1, h, w)


class Coupling(nn.Module):
    def __init__(self, ch, hidden, mask: str, parity: int):
        super().__init__()
        self.mask_kind, self.parity = mask, parity
        cin = ch if mask == "checker" else ch // 2
        cout = ch if mask == "checker" else ch - ch // 2
        self.net = nn.Sequential(
            WNConv2d(cin, hidden, 3), nn.ELU(), WNConv2d(hidden, hidden, 3), nn.ELU(),
        )
        self.out = nn.Conv2d(hidden, 2 * cout, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.log_scale_factor = nn.Parameter(torch.zeros(1, cout, 1, 1))

    def _st(self, cond):
        h = self.out(self.net(cond))
        s, t = h.chunk(2, 1)
        s = torch.tanh(s) * torch.exp(self.log_scale_factor)
        return s, t

    def forward(self, v, reverse=False):
        """Map v -> u (or u -> v when reverse); returns (output, log|det J| of the forward map)."""
        if self.mask_kind == "checker":
            m = checkerboard(v.shape[2], v.shape[3], self.parity, v.device)
            s, t = self._st(v * m)
            s, t = s * (1 - m), t * (1 - m)
            out = v * torch.exp(s) + t if not reverse else (v - t) * torch.exp(-s)
            return out, s.flatten(1).sum(1)
        half = v.shape[1] // 2
        a, b = (v[:, :half], v[:, half:]) if self.parity == 0 else (v[:, v.shape[1] - half :], v[:, : v.shape[1] - half])
        s, t = self._st(a)
        b = b * torch.exp(s) + t if not reverse else (b - t) * torch.exp(-s)
        out = torch.cat([a, b], 1) if self.parity == 0 else torch.cat([b, a], 1)
        return out, s.flatten(1).sum(1)


class RealNVP(nn.Module):
    """u = f(v), v ~ N(0, I). `log_prob(u)` = log N(f^-1(u)) + log|det d f^-1 / du|."""

    def __init__(self, ch, hidden=64, blocks=2):
        super().__init__()
        layers = []
        for _ in range(blocks):
            layers += [Coupling(ch, hidden, "checker", 0), Coupling(ch, hidden, "checker", 1),
                       Coupling(ch, hidden, "channel", 0), Coupling(ch, hidden, "channel", 1)]
        self.layers = nn.ModuleList(layers)

    def inverse(self, u):
        """u -> v, with log|det dv/du| per element."""
        logdet = torch.zeros(u.shape[0], device=u.device)
        for layer in reversed(self.layers):
            u, ld = layer(u, reverse=True)
            logdet = logdet - ld
        return u, logdet

    def forward(self, v):
        """v -> u (sampling direction), with log|det du/dv|."""
        logdet = torch.zeros(v.shape[0], device=v.device)
        for layer in self.layers:
            v, ld = layer(v)
            logdet = logdet + ld
        return v, logdet

    def log_prob(self, u):
        with torch.autocast(u.device.type, enabled=False):
            v, logdet = self.inverse(u.float())
            base = (-0.5 * v**2 - 0.5 * math.log(2 * math.pi)).flatten(1).sum(1)
            return base + logdet

    def sample(self, shape, temperature=1.0, device=None):
        v = torch.randn(shape, device=device) * temperature
        return self.forward(v)[0]

