"""Encoder-side latent search: a slower, better encoder for rate-distortion models.

The encoder network guesses the latents in one pass (amortized inference); for a given image,
gradient descent on the codec's own objective (bits + lambda * MSE of the rec2 reconstruction)
finds latents that cost fewer bits for the same quality (Campos et al. 2019, Yang et al. 2020).
Only the encoder changes: the decoder, the bitstream format and the weights stay as they are,
so files written with a search decode with any selfcodec that reads the model.

The search returns continuous latents; the codec then quantizes and codes them exactly as it
codes the encoder's guess (modes.walk), so exact decoding does not depend on anything here.
"""

import math

import numpy as np
import torch

from ..model import chain
from ..entropy.gaussian import GaussianConditional, quantize_mean
from ..model.base import Rec2Walker, round_around


def _round_sga(t, mean, step, tau: float, gen: torch.Generator):
    """t on the codec's grid of `step` around `mean`, relaxed: stochastic Gumbel annealing (Yang,
    Bamler & Mandt 2020). Each latent is a Gumbel-softmax draw between its two neighbouring grid
    points, weighted by how close it is to each (atanh of the distance) at temperature tau; the
    draw is differentiable in t, and as tau falls it becomes plain rounding. Unlike a
    straight-through rounding, the rate and the decoders see the bin a latent is moving into
    before it crosses, so the descent can trade bits for distortion."""
    r = (t - mean) / step
    lo = torch.floor(r).detach()
    eps = 1e-5
    near = torch.stack([-torch.atanh((r - lo).clamp(-1 + eps, 1 - eps)), -torch.atanh((lo + 1 - r).clamp(-1 + eps, 1 - eps))]) / tau
    u = torch.rand(near.shape, generator=gen).clamp_(1e-9, 1 - 1e-9)
    w = torch.softmax((near - torch.log(-torch.log(u))) / tau, 0)
    return mean + step * (lo + w[1])


class _SearchWalker(Rec2Walker):
    """rec2's chain from given continuous latents. With a temperature (`tau`), the decoders read
    them relaxed (_round_sga) and the rate is the bin probability at the relaxed latent: the
    surrogate to descend (soft). The true rate (hard) is always the rounded latent's, what the
    entropy coder pays; without a temperature the decoders read the rounded latents too, so the
    pass gives the true objective."""

    def __init__(self, imgs, lats, steps, u_prior, tau=None, gen=None):
        super().__init__(imgs, score=False)
        self.lats, self.steps, self.u_prior, self.tau, self.gen = lats, steps, u_prior, tau, gen

    def u(self, model):
        self.soft = self.hard = 0.0
        return chain.by_slices(model, 0, *self.u_prior, self._rates(0))

    def z(self, model, k, prior, img_prev, prev):
        return chain.by_slices(model, k, *prior(), self._rates(k))

    def _rates(self, k):
        """one(part, mean, log_scale) for chain.by_slices: latent k's part rounded (or relaxed), its rates added."""
        lat, step = self.lats[k], self.steps[k]

        def one(part, m, ls):
            t, s = part.of(lat), part.step(step)
            hard = round_around(t, m, s)
            z = hard if self.tau is None else _round_sga(t, m, s, self.tau, self.gen)
            self.soft = self.soft - GaussianConditional.log_prob(z, m, ls, s)
            self.hard = self.hard - GaussianConditional.log_prob(hard.detach(), m.detach(), ls.detach(), s)
            return z

        return one


def _objective(model, imgs, lats, steps, lam, u_prior, tau=None, gen=None):
    """(surrogate loss at temperature tau, true loss of the rounded latents as a float), both in
    bits per pixel + lam * MSE (0..255) of the rec2 reconstruction (relaxed under tau, rounded
    without it); u_prior: û's (mean, log_scale)."""
    pixels = imgs[-1].shape[-1] * imgs[-1].shape[-2]
    walker = _SearchWalker(imgs, lats, steps, u_prior, tau, gen)
    xhat = chain.run(model, walker)[-1]
    mse = ((xhat.clamp(0, 255) - imgs[-1]) ** 2).mean()
    scale = 1.0 / (pixels * math.log(2))
    return walker.soft.sum() * scale + lam * mse, float(walker.hard.detach().sum()) * scale + lam * float(mse.detach())


def file_score(model, level, n_bytes: int, recon: np.ndarray, image: np.ndarray) -> float:
    """The codec's own objective for a coded image: its streams' bits per pixel + λ × MSE (0..255)
    of what the decoder shows (after RDOQ, the refine filter and the smoothing, which the
    search's objective does not see)."""
    h, w = image.shape[:2]
    err = float(np.mean((recon[:h, :w].astype(np.float64) - image[:h, :w]) ** 2))
    return 8.0 * n_bytes / (h * w) + level_lambda(model.cfg.rd_lambdas, level) * err


def level_lambda(lambdas, level) -> float:
    """λ of a level; a fractional level's lies between its two levels' in log space, as its steps
    do in log2 (the encoder alone uses it, so it needs no exact arithmetic)."""
    whole = int(level)
    t = float(level) - whole
    lo = lambdas[whole - 1]
    return lo if not t else math.exp((1 - t) * math.log(lo) + t * math.log(lambdas[whole]))


TAU_START, TAU_END = 0.5, 0.05  # the relaxation's temperature, annealed geometrically over the steps
CHECK_EVERY = 5  # steps between evaluations of the true objective (a forward pass of its own)


def search_latents(model, x: torch.Tensor, level: int, iters: int, lr: float = 0.02) -> tuple[list, list]:
    """Latents [u, z_1, ..., z_K] ([v, u, z_1, ...] with a hyperprior; continuous, each (1, C, h, w)) for coding x (1, 3, H, W,
    0..255 floats) with `model` at `level` in mode rec2: the encoder's guess refined by `iters`
    Adam steps on the relaxed objective (_round_sga; lr in units of each channel's quantization
    step, cosine-decayed to 0), keeping the iterate whose rounded latents score best on the true
    objective (checked every CHECK_EVERY steps and at the last), so the result is never worse on
    it than the guess. Also returns the true objective at each check (the guess's first). The
    draws come from a generator of fixed seed: the same image gives the same file on the
    same machine and thread count (the search itself runs in floating point)."""
    lam = level_lambda(model.cfg.rd_lambdas, level)
    steps = [torch.from_numpy(s).float() for s in model.coding_steps(level)]
    imgs = model.images(x)
    grads = [p.requires_grad for p in model.parameters()]
    gen = torch.Generator().manual_seed(0)
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        with torch.no_grad():
            start = [model.q_u(imgs[0])] + [model.q_z(k, imgs[k]) for k in range(1, model.cfg.scales + 1)]
        if model.cfg.posterior == "gaussian":
            start = [t.chunk(2, 1)[0] for t in start]
        fixed, u_prior = [], model.u_code_prior()
        if model.has_hyper:  # v̂ stays the encoder's (of its guess of û); its rate is the same for every iterate
            fixed = [model.q_v(start[0])]
            m = torch.from_numpy(quantize_mean(model.v_code_prior()[0].detach().numpy())).float()  # as the codec rounds it
            v = round_around(fixed[0], m, torch.from_numpy(model.v_coding_steps(level)).float())
            u_prior = model.u_code_prior(v, start[0].shape[-2:])
        # In units of the step, so that one learning rate suits every channel and level.
        scaled = [(t / s).requires_grad_(True) for t, s in zip(start, steps)]
        opt = torch.optim.Adam(scaled, lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(iters, 1))
        best, history = None, []
        for i in range(iters + 1):
            lats = [t * s for t, s in zip(scaled, steps)]
            if i % CHECK_EVERY == 0 or i == iters:
                with torch.no_grad():
                    _, true_loss = _objective(model, imgs, lats, steps, lam, u_prior)
                if not history or true_loss < min(history):
                    best = [t.detach().clone() for t in lats]
                history.append(true_loss)
            if i == iters:
                break
            tau = TAU_START * (TAU_END / TAU_START) ** (i / max(iters - 1, 1))
            loss, _ = _objective(model, imgs, lats, steps, lam, u_prior, tau, gen)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    finally:
        for p, g in zip(model.parameters(), grads):
            p.requires_grad_(g)
    return fixed + best, history
