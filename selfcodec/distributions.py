"""Likelihoods of the selfVAE in torch: the discretized logistic mixture (DMoL) with RGB
coupling (Salimans et al., 2017) for images, and Gaussians for the latents.

Everything here runs in fp32 even under autocast: log-likelihoods and rates are sums of many
small terms, and bf16 loses them.
"""

import math

import torch
import torch.nn.functional as F

from .transforms import downscale

LOG_SCALE_MIN = -7.0
HALF_BIN = 1.0 / 255.0


def dmol_channels(c: int, k: int) -> int:
    """Network output channels for a C-channel image and K mixture components."""
    return k * (1 + 2 * c + c * (c - 1) // 2)


def dmol_split(params: torch.Tensor, c: int, k: int):
    """(B, P, H, W) network output -> logits (B,K,H,W), means and log_scales (B,C,K,H,W),
    coupling coefficients (B, C(C-1)/2, K, H, W), all fp32."""
    p = params.float()
    b, _, h, w = p.shape
    n_coef = c * (c - 1) // 2
    logits = p[:, :k]
    means = p[:, k : k + c * k].reshape(b, c, k, h, w)
    log_scales = p[:, k + c * k : k + 2 * c * k].reshape(b, c, k, h, w).clamp(min=LOG_SCALE_MIN)
    coeffs = torch.tanh(p[:, k + 2 * c * k :].reshape(b, n_coef, k, h, w))
    return logits, means, log_scales, coeffs


def coupled_means(means, coeffs, x):
    """Means of each channel after the R->G->B coupling with the known values x (B,C,H,W) in [-1,1]."""
    c = means.shape[1]
    if c == 1:
        return means
    out = [means[:, 0]]
    out.append(means[:, 1] + coeffs[:, 0] * x[:, 0:1])
    out.append(means[:, 2] + coeffs[:, 1] * x[:, 0:1] + coeffs[:, 2] * x[:, 1:2])
    return torch.stack(out, 1)


def dmol_log_prob(v: torch.Tensor, params: torch.Tensor, k: int) -> torch.Tensor:
    """log P(v) per image in nats; v holds integers 0..255, shape (B, C, H, W)."""
    return dmol_log_prob_pixels(v, params, k).sum(dim=(1, 2))


def dmol_log_prob_pixels(v: torch.Tensor, params: torch.Tensor, k: int) -> torch.Tensor:
    """log P(v) per pixel (all channels), shape (B, H, W), nats."""
    c = v.shape[1]
    logits, means, log_scales, coeffs = dmol_split(params, c, k)
    x = (v.float() / 127.5 - 1.0).unsqueeze(2)  # (B,C,1,H,W)
    m = coupled_means(means, coeffs, x[:, :, 0])
    lp = _bin_log_prob(x, m, log_scales).sum(1) + torch.log_softmax(logits, 1)  # (B,K,H,W)
    return torch.logsumexp(lp, 1)


def _bin_log_prob(x, m, log_scales):
    """log P(bin of x) under each logistic component (x in [-1, 1], broadcast against m);
    the end bins reach to -inf and +inf."""
    centred = x - m
    inv_s = torch.exp(-log_scales)
    plus = inv_s * (centred + HALF_BIN)
    minus = inv_s * (centred - HALF_BIN)
    log_cdf_plus = plus - F.softplus(plus)  # log sigmoid(plus)
    log_one_minus_cdf_minus = -F.softplus(minus)
    cdf_delta = torch.sigmoid(plus) - torch.sigmoid(minus)
    mid = inv_s * centred
    log_pdf_mid = mid - log_scales - 2.0 * F.softplus(mid)
    # Interior bins: log of the CDF difference, or its density approximation where it underflows.
    inner = torch.where(
        cdf_delta > 1e-5,
        torch.log(torch.clamp(cdf_delta, min=1e-12)),
        log_pdf_mid - math.log(127.5),
    )
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_minus, inner))


def block_mean_range(v: torch.Tensor, y: torch.Tensor):
    """For the last pixel (bottom right) of each 2x2 block of v (B, C, H, W; even H, W; only the
    other three pixels are read): the range [lo, hi] of values (at most 4) that give the block
    the rounded mean y = downscale(v) (B, C, H/2, W/2). Returns lo, hi of y's shape."""
    v, y = v.float(), y.float()
    others = v[:, :, 0::2, 0::2] + v[:, :, 0::2, 1::2] + v[:, :, 1::2, 0::2]
    # downscale rounds (sum + 2) / 4 down, so the block sum lies in [4y - 2, 4y + 1]
    return (4 * y - 2 - others).clamp(0, 255), (4 * y + 1 - others).clamp(0, 255)


def dmol_log_prob_given_y(v: torch.Tensor, params: torch.Tensor, k: int) -> torch.Tensor:
    """log P(v | y) per image in nats, for v whose 2x2 rounded means y = downscale(v) are
    known: three pixels of each block under the DMoL, and each channel of the last pixel
    under the joint mixture's p(x_c | x_<c) (the RGB coupling applied, each component
    weighted by its probability of the earlier channels' values: what the entropy coder
    codes channel by channel), renormalized over the at most 4 values consistent with y.
    A proper distribution over the images that downscale to y, so a sharper
    -log p(x | y, z) than the DMoL's, which spends probability on images with other means."""
    lp = dmol_log_prob_pixels(v, params, k)
    c = v.shape[1]
    lo, hi = block_mean_range(v, downscale(v))
    logits, means, log_scales, coeffs = dmol_split(params[:, :, 1::2, 1::2], c, k)
    x = v[:, :, 1::2, 1::2].float() / 127.5 - 1.0  # (B,C,h,w)
    m = coupled_means(means, coeffs, x)  # (B,C,K,h,w)
    comp = _bin_log_prob(x.unsqueeze(2), m, log_scales)  # each component's log P(x_c | x_<c)
    seen = torch.cat([torch.zeros_like(comp[:, :1]), comp[:, :-1].cumsum(1)], 1)  # log P_k(x_<c)
    log_w = torch.log_softmax(logits.unsqueeze(1) + seen, 2)  # (B,C,K,h,w)
    own = torch.logsumexp(comp + log_w, 2)
    cand = lo.unsqueeze(2) + torch.arange(4, device=v.device, dtype=lo.dtype).view(1, 1, 4, 1, 1)
    xc = (cand.clamp(max=255) / 127.5 - 1.0).unsqueeze(3)  # (B,C,4,1,h,w)
    mix = torch.logsumexp(_bin_log_prob(xc, m.unsqueeze(2), log_scales.unsqueeze(2)) + log_w.unsqueeze(2), 3)
    norm = torch.logsumexp(mix.masked_fill(cand > hi.unsqueeze(2), float("-inf")), 2)  # (B,C,h,w)
    last = (own - norm).sum(1)
    return lp.sum(dim=(1, 2)) - lp[:, 1::2, 1::2].sum(dim=(1, 2)) + last.sum(dim=(1, 2))


def dmol_point(params: torch.Tensor, c: int, k: int, how: str = "mean") -> torch.Tensor:
    """A point estimate 0..255 of a DMoL image: `mean` of the mixture, or the `mode`
    (centre of the most probable component), channel by channel through the coupling."""
    logits, means, log_scales, coeffs = dmol_split(params, c, k)
    weights = torch.softmax(logits, 1)
    best = F.one_hot(logits.argmax(1), k).permute(0, 3, 1, 2).float()
    sel = weights if how == "mean" else best
    x = torch.zeros(means.shape[0], c, *means.shape[-2:], device=params.device)
    for ch in range(c):
        m = coupled_means(means, coeffs, x)[:, ch]
        x[:, ch] = torch.round((sel * m).sum(1).clamp(-1, 1) * 127.5 + 127.5) / 127.5 - 1.0
    return torch.round((x + 1.0) * 127.5)


def dmol_mean(params: torch.Tensor, c: int, k: int) -> torch.Tensor:
    """The mixture mean 0..255, differentiable (dmol_point without rounding), for training
    against a squared error."""
    logits, means, log_scales, coeffs = dmol_split(params, c, k)
    weights = torch.softmax(logits, 1)
    chans = []
    for ch in range(c):
        known = torch.stack(chans + [torch.zeros_like(weights[:, 0])] * (c - ch), 1)
        chans.append((weights * coupled_means(means, coeffs, known)[:, ch]).sum(1).clamp(-1, 1))
    return (torch.stack(chans, 1) + 1.0) * 127.5


def dmol_sample(params: torch.Tensor, c: int, k: int, temperature: float = 1.0) -> torch.Tensor:
    """Draw integers 0..255 from the mixture (for generation)."""
    logits, means, log_scales, coeffs = dmol_split(params, c, k)
    g = -torch.log(-torch.log(torch.rand_like(logits).clamp(1e-6, 1 - 1e-6)))
    sel = F.one_hot((logits + g).argmax(1), k).permute(0, 3, 1, 2).float()
    x = torch.zeros(means.shape[0], c, *means.shape[-2:], device=params.device)
    for ch in range(c):
        m = (coupled_means(means, coeffs, x)[:, ch] * sel).sum(1)
        s = (torch.exp(log_scales[:, ch]) * sel).sum(1) * temperature
        u = torch.rand_like(m).clamp(1e-5, 1 - 1e-5)
        x[:, ch] = (m + s * (torch.log(u) - torch.log1p(-u))).clamp(-1, 1)
        x[:, ch] = torch.round((x[:, ch] + 1) * 127.5) / 127.5 - 1.0
    return torch.round((x + 1.0) * 127.5)


def gaussian_log_density(z, mean, log_scale):
    """Sum of log N(z; mean, exp(log_scale)^2) per batch element, nats."""
    lp = -0.5 * ((z - mean) * torch.exp(-log_scale)) ** 2 - log_scale - 0.5 * math.log(2 * math.pi)
    return lp.flatten(1).sum(1)


def gaussian_bin_log_prob(z, mean, log_scale, step: float = 1.0):
    """Sum of log P(bin of width `step` around z) under N(mean, scale^2): the code length of a
    quantized latent, and the density of z + uniform noise convolved with the bin (Ballé 2018)."""
    scale = torch.exp(log_scale)
    d = (z - mean).abs()  # use the upper tail for precision, as CompressAI does
    upper = torch.special.ndtr((step / 2 - d) / scale)
    lower = torch.special.ndtr((-step / 2 - d) / scale)
    return torch.log(torch.clamp(upper - lower, min=1e-9)).flatten(1).sum(1)


def gaussian_kl(mean_q, log_scale_q, mean_p, log_scale_p):
    """Analytic KL(N_q || N_p) summed per batch element, nats."""
    var_q, var_p = torch.exp(2 * log_scale_q), torch.exp(2 * log_scale_p)
    kl = log_scale_p - log_scale_q + (var_q + (mean_q - mean_p) ** 2) / (2 * var_p) - 0.5
    return kl.flatten(1).sum(1)
