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
from ..model.base import Rec2Walker, round_around, straight_through


def _round_ste(t, mean, step):
    """t rounded to the codec's grid around `mean`, with the identity's gradient."""
    return straight_through(t, round_around(t, mean, step))


class _SearchWalker(Rec2Walker):
    """rec2's chain from given continuous latents: the decoders read them rounded
    (straight-through gradient). The surrogate rate (soft) is the bin probability at the
    continuous latent, smooth in it; the true rate (hard) is the rounded latent's, what the
    entropy coder pays."""

    def __init__(self, imgs, lats, steps, u_prior):
        super().__init__(imgs, score=False)
        self.lats, self.steps, self.u_prior = lats, steps, u_prior

    def u(self, model):
        self.soft = self.hard = 0.0
        return chain.by_slices(model, 0, *self.u_prior, self._rates(0))

    def z(self, model, k, prior, img_prev, prev):
        return chain.by_slices(model, k, *prior(), self._rates(k))

    def _rates(self, k):
        """one(part, mean, log_scale) for chain.by_slices: latent k's part rounded, its rates added."""
        lat, step = self.lats[k], self.steps[k]

        def one(part, m, ls):
            t, s = part.of(lat), part.step(step)
            z = _round_ste(t, m, s)
            self.soft = self.soft - GaussianConditional.log_prob(t, m, ls, s)
            self.hard = self.hard - GaussianConditional.log_prob(z.detach(), m.detach(), ls.detach(), s)
            return z

        return one


def _objective(model, imgs, lats, steps, lam, u_prior):
    """(surrogate loss to descend, true loss of the rounded latents as a float), both in bits
    per pixel + lam * MSE (0..255) of the rec2 reconstruction; u_prior: û's (mean, log_scale)."""
    pixels = imgs[-1].shape[-1] * imgs[-1].shape[-2]
    walker = _SearchWalker(imgs, lats, steps, u_prior)
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


def search_latents(model, x: torch.Tensor, level: int, iters: int, lr: float = 0.02) -> tuple[list, list]:
    """Latents [u, z_1, ..., z_K] ([v, u, z_1, ...] with a hyperprior; continuous, each (1, C, h, w)) for coding x (1, 3, H, W,
    0..255 floats) with `model` at `level` in mode rec2: the encoder's guess refined by `iters`
    Adam steps (lr in units of each channel's quantization step, cosine-decayed to 0), keeping
    the iterate whose rounded latents score best on the true objective, so the result is never
    worse on it than the guess. Also returns the true objective at every iterate (the guess's
    first). The learning rate decays because the rounding makes the surrogate's gradient stale
    after a few steps."""
    lam = level_lambda(model.cfg.rd_lambdas, level)
    steps = [torch.from_numpy(s).float() for s in model.coding_steps(level)]
    imgs = model.images(x)
    grads = [p.requires_grad for p in model.parameters()]
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
            loss, true_loss = _objective(model, imgs, lats, steps, lam, u_prior)
            if not history or true_loss < min(history):
                best = [t.detach().clone() for t in lats]
            history.append(true_loss)
            if i == iters:
                break
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    finally:
        for p, g in zip(model.parameters(), grads):
            p.requires_grad_(g)
    return fixed + best, history
