"""Generalized divisive normalization, the fast networks' nonlinearity."""

import torch
import torch.nn as nn
import torch.nn.functional as F


class GDN(nn.Module):
    """Generalized divisive normalization (Ballé et al., 2016): y_i = x_i / sqrt(beta_i +
    sum_j gamma_ij x_j^2); with `inverse`, the multiplication (IGDN) of the decoders.
    beta and gamma are kept non-negative by taking absolute values of the parameters."""

    def __init__(self, ch: int, inverse: bool = False):
        super().__init__()
        self.inverse = inverse
        self.beta = nn.Parameter(torch.ones(ch))
        self.gamma = nn.Parameter(0.1 * torch.eye(ch) + 1e-3)

    def forward(self, x):
        ch = x.shape[1]
        gamma = self.gamma.abs().to(x.dtype).view(ch, ch, 1, 1)
        norm = torch.sqrt(F.conv2d(x * x, gamma, self.beta.abs().to(x.dtype) + 1e-6))
        return x * norm if self.inverse else x / norm
