"""The selfVAE model family in one definition: K levels of self-supervised images
y_1 < ... < y_K < x (K = 0 is the plain VAE with RealNVP prior), a latent u for the
coarsest image with a RealNVP prior, and a latent z_k for each finer image given the
coarser image and the latent below (the paper's Eq. 2 and its K-level form).

Images are lists, coarsest first: images[0] = y_1 (or x for the VAE), images[-1] = x.
"""

import json
import math
from dataclasses import asdict, dataclass, field, fields
from fractions import Fraction

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import chain
from ..entropy import rdoq
from ..entropy.dmol import DMoL
from ..entropy.gaussian import GaussianConditional, kl as gaussian_kl, log_density as gaussian_log_density
from .chain import Walker
from ..nn.flows import RealNVP
from ..nn.blocks import scale_image
from .modelfile import current_names
from ..nn.transforms import TRANSFORMS


ARCH_VERSION = 1
"""Bump when the networks compute something else from the same weights: it is part of a
model's identity in .svae headers, so old files then meet a clear model-mismatch error."""


@dataclass
class Config:
    name: str = "selfvae-downscale"
    transform: str = "downscale"  # "downscale", "sketch", or "none" (plain VAE)
    scales: int = 1  # K: number of self-supervised images y_1..y_K (1 = the paper's two-level model)
    ch: int = 48  # feature channels
    growth: int = 24  # DenseNet growth rate
    block_convs: int = 2  # conv layers per dense block
    latent_down: int = 3  # 2x downsamplings from an image to its latent
    u_ch: int = 16
    z_ch: int = 32
    mixtures: int = 10
    flow_blocks: int = 2
    flow_hidden: int = 48
    posterior: str = "uniform"  # "uniform": quantization-aware (additive U(-1/2, 1/2)); "gaussian": the paper's
    image_ch: int = 3
    # Rate-distortion training (empty: the ELBO). One lambda per quality level 1..n: the level's
    # loss is bits per pixel + lambda * MSE (0..255) of the rec2 reconstruction, and each level
    # learns its own quantization step per latent channel (so one model spans every level).
    rd_lambdas: tuple = ()
    # Dense blocks of a decoder-only residual filter on the final x̂ at full resolution (0: none).
    # The x̂ network has one 3x3 layer at full resolution; this gives it more where the detail is.
    refine: int = 0
    # x given y: renormalize the last pixel of each 2x2 block over the values that keep y = d(x)
    # (downscale only; see entropy.dmol.dmol_log_prob_given_y). Off in weights from before it.
    y_consistent: bool = False
    # Dense blocks of the context networks that code each image k >= 1 in three stages per 2x2
    # block (STAGE_OF_PHASE): a pixel's DMoL then also sees the pixels of earlier stages, the
    # near neighbours a pixel-wise decoder cannot (0: one pass, each pixel given y and z only).
    x_context: int = 0
    # The same for images[0], the coarsest image (x itself for the VAE), which p(images[0] | u)
    # otherwise codes pixel by pixel given u alone; its context nets read no coarser image.
    y_context: int = 0
    # The network family: "densenet" (the paper's, densenet.DenseSelfVAE) or "fast" (fast.FastSelfVAE:
    # strided convolutions with GDN, the bulk of the compute at 1/4 resolution and below).
    network: str = "densenet"
    mid_ch: int = 64  # fast networks: width of the layers at 1/4 resolution (cfg.ch: at 1/8 and below)
    head_ch: int = 32  # fast networks: width of the layers at 1/2 resolution
    # Fast networks: channels of a hyperprior latent v for û at 1/4 of û's side (0: û under its
    # factorized prior alone). v is coded first, under a factorized prior; û then under a mean
    # and scale per element computed from v̂ (Ballé et al. 2018; Minnen et al. 2018).
    u_hyper: int = 0
    # The upscale of the coarser image that images[k]'s DMoL means are offsets from (downscale):
    # "bilinear" (earlier weights) or "bicubic" (what cgen and crec must never fall below).
    up_base: str = "bilinear"
    # Rate-distortion fast networks: code û (u_slices) and each ẑ_k (z_slices) in that many channel
    # slices, each slice's prior corrected from the slices before it (entropy/channel_context.py;
    # 0: one piece under the base prior). slice_ch: the width of the correcting nets.
    u_slices: int = 0
    z_slices: int = 0
    slice_ch: int = 64
    # Fast rate-distortion networks: code û and each ẑ_k in two checkerboard halves, the second's
    # prior corrected from the first (entropy/checkerboard.py; nets of width slice_ch), in place
    # of channel slices. Latents then need even sides: the image's multiple doubles.
    checkerboard: bool = False
    # Fast networks: width of the pixel context nets of x_context / y_context (whose values
    # there count their 3x3 layers at half the image's resolution; entropy/pixel_context.py).
    context_ch: int = 64
    # Pixel contexts: the stages' RGB coupling centred on each channel's predicted value
    # (entropy.dmol.add_centred), so a coefficient near 1 says "off by as much as the earlier
    # channels were", which is what smooth colour in photos asks and the raw coupling (the
    # coefficient times the earlier channel's value, |c| < 1) cannot say; off in earlier weights.
    centred_coupling: bool = False
    # Pixel contexts: a linear 3x3 path from the nets' input to their output beside the others.
    context_skip: bool = False
    # Fast networks: width of the refine filter's layers (refine: their count, at full resolution).
    refine_ch: int = 16
    # Fast networks: 3x3 layers (and their width) of a second residual filter on x̂, after the
    # first, at half resolution (x̂ as a space-to-depth beside the x decoder's features): for the
    # same compute per pixel a view 4x wider, enough to tell noise the latents' quantization
    # leaves on flat areas (colour speckle) from the image's own texture. 0: none.
    refine_half: int = 0
    refine_half_ch: int = 32
    # Fast networks: kernel side of the image decoders' last layer (at 1/2 resolution, before the
    # pixel shuffle); 1 maps each feature vector to its 2x2 block alone, 3 lets a block see its
    # neighbours' features too.
    head_k: int = 1
    # Fast networks: residual blocks (two 3x3 layers, the second starting at zero) after each
    # GDN of the analysis transforms, the encoders of u and z: a stronger encoder that costs
    # the decoder nothing (the decoder never runs them). 0: none.
    enc_res: int = 0
    # The decoder's edge-preserving smoothing of x̂ (codec/smoothing.py): per mode (rec1, rec2,
    # cgen, crec) the bilateral filter's range sigma at each quality level 1..n, tuned on
    # photos outside Kodak; a mode without an entry, or a sigma of 0, is not smoothed.
    smooth: dict = field(default_factory=dict)

    def __post_init__(self):
        self.rd_lambdas = tuple(float(v) for v in self.rd_lambdas)  # JSON gives a list
        self.smooth = {str(k): tuple(float(s) for s in v) for k, v in dict(self.smooth).items()}
        if any(s < 0 or s > 255 or s != s for v in self.smooth.values() for s in v):
            raise ValueError("smooth: range sigmas lie in 0..255")
        if self.up_base not in ("bilinear", "bicubic"):
            raise ValueError(f"up_base must be bilinear or bicubic, not {self.up_base!r}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Config":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in current_names(json.loads(text)).items() if k in known})

    @classmethod
    def of(cls, **fields) -> "Config":
        """A configuration from fields, any under its earlier name (modelfile.RENAMED)."""
        return cls(**current_names(fields))


STAGE_OF_PHASE = (0, 1, 1, 2)
"""Coding stage of each pixel of a 2x2 block (phases: top left, top right, bottom left, bottom
right): the top-left pixels first, then the other two of the first row and column given them,
then the bottom-right ones given all three (and given y, for a y-consistent model)."""


def phase_planes(h: int, w: int, device=None) -> torch.Tensor:
    """One-hot (1, 4, h, w) of each pixel's phase in its 2x2 block (h, w even)."""
    idx = torch.arange(4, device=device).view(2, 2).repeat(h // 2, w // 2)
    return F.one_hot(idx, 4).permute(2, 0, 1)[None].float()


def stage_mask(stage: int, h: int, w: int, device=None, before: bool = False) -> torch.Tensor:
    """(1, 1, h, w) bool: the pixels of `stage`, or with `before` those of every earlier stage."""
    phases = [p for p, s in enumerate(STAGE_OF_PHASE) if (s < stage if before else s == stage)]
    return phase_planes(h, w, device)[:, phases].sum(1, keepdim=True) > 0


class FloatArithmetic:
    """The networks' float arithmetic (training, generation, the encoders): inputs as the networks
    take them, outputs as they give them. exact.IntArithmetic is the integer one of the coder."""

    @staticmethod
    def net(model, name):
        return getattr(model, name)

    image = staticmethod(scale_image)  # pixels 0..255 -> network input

    @staticmethod
    def latent(t):  # a latent or features -> network input
        return t

    @staticmethod
    def out(t):  # a network output -> values (fp32, even under autocast)
        return t.float()

    @staticmethod
    def param(t):  # a parameter read as a value
        return t

    @staticmethod
    def grid(t):  # a value a table is built from (the exact path rounds it to its grid)
        return t

    coupling = staticmethod(torch.tanh)  # raw DMoL coupling -> coefficient (the exact path: its table)


FLOAT = FloatArithmetic()

FAMILIES = {}
"""Network families by the name cfg.network gives: each builds the contract of SelfVAE."""


def register_family(name: str):
    def add(cls):
        FAMILIES[name] = cls
        return cls
    return add


class SelfVAE(nn.Module):
    """What every network family shares: the images, the latents' priors and steps, the chain's
    objectives; a family (densenet.DenseSelfVAE, fast.FastSelfVAE) builds the networks."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.dmol_log_prob = DMoL.log_prob  # training may swap in compiled versions of these two
        self.dmol_mean = DMoL.mean
        K, L = cfg.scales, cfg.latent_down
        if cfg.transform == "none":
            if K != 0:
                raise ValueError("the plain VAE has no self-supervised images (scales=0)")
            self.ratio, y_ch = 1, cfg.image_ch
        else:
            _, self.ratio, y_ch = TRANSFORMS[cfg.transform]
            if cfg.transform == "sketch" and K != 1:
                raise ValueError("a sketch cannot be applied twice: selfvae-sketch has scales=1")
            if K < 1:
                raise ValueError("a selfVAE needs levels >= 1")
        if cfg.y_consistent and cfg.transform != "downscale":
            raise ValueError("y_consistent needs the downscale transform (y = 2x2 rounded means)")
        self.img_ch = [y_ch] * K + [cfg.image_ch]
        r_steps = int(math.log2(self.ratio))
        if r_steps > L:
            raise ValueError("latent_down must be at least log2 of the transform's ratio")
        # A factorized prior for û that the entropy coder can use symbol by symbol.
        self.u_code_mean = nn.Parameter(torch.zeros(1, cfg.u_ch, 1, 1))
        self.u_code_log_scale = nn.Parameter(torch.zeros(1, cfg.u_ch, 1, 1))
        if cfg.rd_lambdas:  # log2 of each level's step per channel: u's channels, then each z_k's
            # starts at steps 2 .. 1/2 from level 1 to the last, the ELBO models' LEVELS table
            start = torch.linspace(1.0, -1.0, len(cfg.rd_lambdas)) if len(cfg.rd_lambdas) > 1 else torch.zeros(1)
            self.rd_log2_step = nn.Parameter(start[:, None].repeat(1, cfg.u_ch + K * cfg.z_ch))
        self._build_networks()
        if not hasattr(self, "flow"):
            self.flow = RealNVP(cfg.u_ch, cfg.flow_hidden, cfg.flow_blocks)

    def _build_networks(self):
        raise NotImplementedError  # each family (densenet.py, fast.py) builds its own

    # ---- geometry -------------------------------------------------------------------------
    def images(self, x: torch.Tensor) -> list:
        """[y_1, ..., y_K, x] from x (integers 0..255, float tensor)."""
        out = [x]
        if self.cfg.transform != "none":
            fn = TRANSFORMS[self.cfg.transform][0]
            for _ in range(self.cfg.scales):
                out.insert(0, fn(out[0]))
        return out

    # ---- the networks, one call each (the codec composes these) ---------------------------
    def q_u(self, img0):
        """Posterior parameters of u: mean (uniform) or (mean, log_scale) (gaussian)."""
        return self.enc_u(scale_image(img0)).float()

    def q_z(self, k, img_k):
        return self.enc_z[k - 1](scale_image(img_k)).float()

    def p_img0(self, u, features: bool = False):
        """DMoL parameters of images[0] given u; with `features`, also the decoder's last hidden
        features (what y_context's nets read)."""
        params, h = self._p_img0(FLOAT, u)
        return (params, h) if features else params

    def p_z(self, k, img_prev, prev_latent):
        """Prior of z_k given images[k-1] and the latent below: (mean, log_scale), fp32."""
        return self._p_z(FLOAT, k, img_prev, prev_latent)

    def p_img(self, k, z, img_prev, features: bool = False):
        """DMoL parameters of images[k] given z_k and images[k-1]; with `features`, also the
        decoder's last hidden features (what `refine` reads)."""
        params, h = self._p_img(FLOAT, k, z, img_prev)
        return (params, h) if features else params

    # What each family defines, in an arithmetic `a` (FLOAT here; exact.ExactModel passes its
    # integer one, so the tables' networks are written once for both paths):
    # _p_img0(a, u) -> (params, h); _p_z(a, k, img_prev, latent) -> (mean, log_scale);
    # _p_img(a, k, z, img_prev) -> (params, h); table_nets() -> the modules whose outputs define
    # coding tables; LEVEL_LISTS: the module lists indexed by level (z_1, ...).

    def offset_means(self, params, prev, k):
        """The DMoL means of images[k] as offsets from the upscale (cfg.up_base) of the coarser
        image (scaled to [-1, 1]): the network only has to learn the detail, and starts from a
        good reconstruction. Both upscales have dyadic 2x weights (bicubic: -27/256, 225/256, ...),
        so on the exact path's grid values they are exact."""
        n, c = self.cfg.mixtures, self.img_ch[k]
        up = F.interpolate(prev, scale_factor=2, mode=self.cfg.up_base, align_corners=False).repeat_interleave(n, dim=1)
        b, _, h, w = up.shape
        zeros = up.new_zeros(())  # one added tensor, not slices of params: their backward is cheap
        offset = torch.cat([zeros.expand(b, n, h, w), up, zeros.expand(b, params.shape[1] - n - c * n, h, w)], 1)
        return params + offset.to(params.dtype)

    def staged(self, k: int) -> bool:
        """Whether images[k] is coded in stages (x_context for k >= 1, y_context for k = 0)."""
        return bool(self.cfg.x_context if k >= 1 else self.cfg.y_context)

    def stage_params(self, k, stage, params, h, img, img_prev):
        """DMoL parameters of the pixels of `stage` (0, 1, 2) of images[k], given the decoder's
        params and features h, images[k - 1] (None for k = 0), and the pixels of earlier stages
        in img (the others are not read: the decoder passes an image it has only partly decoded)."""
        return self._stage_params(FLOAT, k, stage, params, h, img, img_prev)

    def _stage_params(self, a, k, stage, params, h, img, img_prev):
        return params  # a family with context nets computes the stages' parameters (params itself: unchanged)

    def refine(self, xhat, h):
        """The final x̂ (0..255) after a residual filter, given p_img's features; x̂ itself
        for a model without one."""
        return xhat

    def x_params(self, k, params, h, img, img_prev):
        """Every pixel's DMoL parameters under the staged model, each from its own stage given
        the true earlier pixels (what the likelihood of the whole image needs)."""
        if not self.staged(k):
            return params
        out = self.stage_params(k, 0, params, h, img, img_prev)
        for stage in (1, 2):
            sel = stage_mask(stage, *img.shape[-2:], img.device)
            out = torch.where(sel, self.stage_params(k, stage, params, h, img, img_prev), out)
        return out

    def staged_image(self, k, params, h, img_prev, draw):
        """An image drawn stage by stage: draw(params) -> image (a point estimate or a sample)
        for each stage's pixels given the ones drawn before; draw(params) for one-pass models."""
        img = draw(params)
        if self.staged(k):
            for stage in (1, 2):
                sel = stage_mask(stage, *img.shape[-2:], img.device)
                img = torch.where(sel, draw(self.stage_params(k, stage, params, h, img, img_prev)), img)
        return img

    def latent_steps(self, level_idx: torch.Tensor) -> list:
        """Quantization steps of a rate-distortion model for 0-based levels (B,): [u, z_1, ..]
        each (B, C, 1, 1)."""
        return list(level_steps(self.rd_log2_step, level_idx).split(self._latent_channels(), 1))

    def _latent_channels(self) -> list:
        """Channels of u, z_1, ..., z_K: the columns of rd_log2_step in order."""
        return [self.cfg.u_ch] + [self.cfg.z_ch] * self.cfg.scales

    def coding_steps(self, level: int, to_step=None) -> list:
        """The steps the codec uses at a level (1-based), float64 (1, C, 1, 1) arrays on the 1/256
        grid; to_step(log2 steps) -> steps replaces numpy's exp2 (exact.step_from_log2: a table)."""
        import numpy as np

        steps = grid_steps(self.rd_log2_step, level, to_step)
        sizes = np.cumsum(self._latent_channels())[:-1]
        return [s[None, :, None, None] for s in np.split(steps, sizes)]

    has_hyper = False  # a hyperprior for û (fast.FastSelfVAE with cfg.u_hyper)

    def latent_context(self, k: int):
        """The channel-wise context of û (k = 0) or ẑ_k, or None: the latent is coded in one piece
        under its base prior (fast.FastSelfVAE with cfg.u_slices / z_slices has them)."""
        return None

    def u_code_prior(self, v=None, size=None):
        """û's coding prior (mean, log_scale): per channel; given v̂ (a model with a hyperprior)
        per element of a û of spatial `size`."""
        return self._u_code_prior(FLOAT, v, size)

    def _u_code_prior(self, a, v=None, size=None):
        return a.param(self.u_code_mean), a.grid(a.param(self.u_code_log_scale).clamp(-6.0, 6.0))

    # ---- the objective ------------------------------------------------------------------
    def _latent(self, params, sample: bool):
        """Draw from the posterior: returns (latent, mean, log_scale or None)."""
        if self.cfg.posterior == "gaussian":
            mean, log_scale = params.chunk(2, 1)
            log_scale = log_scale.clamp(-7.0, 5.0)
            z = mean + torch.exp(log_scale) * torch.randn_like(mean) if sample else mean
            return z, mean, log_scale
        z = params + (torch.rand_like(params) - 0.5) if sample else torch.round(params)
        return z, params, None

    def forward(self, x: torch.Tensor, sample: bool = True, level_idx: torch.Tensor | None = None,
                quant: str = "noise", cgen: int = 0) -> dict:
        """Loss terms per image in nats, plus `log_w` (one importance weight sample); with
        level_idx, the rate-distortion terms of rd_forward instead."""
        if level_idx is not None:
            return self.rd_forward(x, level_idx, quant, cgen)
        walker = _ElboWalker(self.images(x), sample)
        chain.run(self, walker)
        return walker.terms()

    def lossless_forward(self, x: torch.Tensor, level_idx: torch.Tensor) -> dict:
        """A rate-distortion model's lossless code length per image (nats): the rates of v̂, û
        and ẑ_k at each image's level, and -log p(images[k] | ...) of the true images along
        the chain, staged (context nets) and y-consistent as the codec codes them."""
        walker = _LosslessWalker(self.images(x), self.latent_steps(level_idx), level_idx)
        chain.run(self, walker)
        return walker.terms(x, x)

    def img_log_prob(self, k: int, img, params):
        """log p(images[k] | its decoder's params), nats per image; for k >= 1 given
        images[k - 1] = d(images[k]) too when the model is y-consistent."""
        if k >= 1 and self.cfg.y_consistent:
            return DMoL.log_prob_given_y(img, params, self.cfg.mixtures)
        return self.dmol_log_prob(img, params, self.cfg.mixtures)

    def rd_forward(self, x: torch.Tensor, level_idx: torch.Tensor, quant: str = "noise", cgen: int = 0) -> dict:
        """Terms of the rate-distortion objective for the rec2 chain, per image: rates of û and
        ẑ_k under the codec's own priors (nats), the squared error of x̂ (sum over pixels, 0..255),
        and the likelihoods that keep the other modes working: -log p(images[k] | ...) along the
        same chain, and the RealNVP prior's fit to û (detached: it does not steer the encoder).
        `quant` says how latents stand in for the codec's rounding: "noise" adds uniform noise;
        "round" rounds around the prior means as the codec does (no gradient reaches the
        encoders: for training decoder-side parts); "mixed" takes the rates of the noisy latents
        and feeds the decoders the rounded ones with a straight-through gradient (Minnen &
        Singh 2020), so every part learns while the decoders see what the codec sends;
        "rdoq" is "mixed" with the latents quantized as the codec's encoder does (entropy/rdoq.py).
        Also `mse_y`, the squared error of the last coarser image's point estimate (what rec1
        and rec2 decode it to), and with `cgen` = n > 0, `mse_cgen` of the first n images'
        x̂ as cgen decodes it (the coarser image exact, z_K the prior's mean); the flow's fit
        is skipped (zeros) while the flow is frozen."""
        if quant not in ("noise", "round", "mixed", "rdoq"):
            raise ValueError(f"quant must be noise, round, mixed or rdoq, not {quant!r}")
        walker = _RDWalker(self.images(x), self.latent_steps(level_idx), level_idx, quant, cgen)
        xhat = chain.run(self, walker)[-1]
        return walker.terms(xhat, x)


class _TrueImages:
    """Walker part: every image along the chain is the true one, scored (in self.re) under its
    likelihood as the codec codes it exactly, staged and y-consistent."""

    def image(self, model, k, decode, img_prev):
        params, h = decode()
        img = self.imgs[k]
        self.re.append(-model.img_log_prob(k, img, model.x_params(k, params, h, img, img_prev)))
        return img


class _ElboWalker(_TrueImages, Walker):
    """The ELBO's chain: every latent drawn from its posterior (or its mean), every image the
    true one, scored under its likelihood; KL terms and one importance weight along the way."""

    def __init__(self, imgs, sample: bool):
        self.imgs, self.sample = imgs, sample
        self.out, self.re, self.kl_z, self.log_w_z = {}, [], [], []

    def u(self, model):
        u, mu_u, ls_u = model._latent(model.q_u(self.imgs[0]), self.sample)
        self.log_pu = model.flow.log_prob(u)
        if ls_u is None:
            self.out["kl_u"] = -self.log_pu
            self.log_q = torch.zeros_like(self.log_pu)
        else:
            self.log_q = gaussian_log_density(u, mu_u, ls_u)
            self.out["kl_u"] = self.log_q - self.log_pu
        code_mean, code_ls = model.u_code_prior()
        self.out["u_code"] = -GaussianConditional.log_prob(u.detach(), code_mean, code_ls)
        return u

    def z(self, model, k, prior, img_prev, prev):
        z, mu_z, ls_z = model._latent(model.q_z(k, self.imgs[k]), self.sample)
        pm, pls = prior()
        if ls_z is None:
            lp = GaussianConditional.log_prob(z, pm, pls)
            self.kl_z.append(-lp)
            self.log_w_z.append((lp,))
        else:
            self.kl_z.append(gaussian_kl(mu_z, ls_z, pm, pls))
            self.log_w_z.append((gaussian_log_density(z, pm, pls), -gaussian_log_density(z, mu_z, ls_z)))
        return z

    def terms(self) -> dict:
        out, re, kl_z = self.out, self.re, self.kl_z
        log_w = -re[0] + self.log_pu - self.log_q
        for terms, r in zip(self.log_w_z, re[1:]):  # (log p(z) [, -log q(z)]), added in this order
            for t in terms:
                log_w = log_w + t
            log_w = log_w - r
        out["re_x"] = re[-1]
        out["re_y"] = sum(re[:-1]) if len(re) > 1 else torch.zeros_like(re[0])
        out["kl_z"] = sum(kl_z) if kl_z else torch.zeros_like(re[0])
        out["nelbo"] = out["re_x"] + out["re_y"] + out["kl_u"] + out["kl_z"]
        out["log_w"] = log_w
        for k, (r, kz) in enumerate(zip(re[1:], kl_z), start=1):
            out[f"re_{k}"], out[f"kl_z{k}"] = r, kz
        return out


class Rec2Walker(Walker):
    """rec2's chain as training sees it: each coarser image is the rounded mean of its
    likelihood (straight-through, as the codec rounds it), x̂ the mean of x's after the refine
    filter. Subclasses say how û and ẑ stand in for the coded latents; with `score`, each
    true image's code length along the chain is kept too (re)."""

    def __init__(self, imgs, score: bool):
        self.imgs, self.score, self.re, self.mse_y = imgs, score, [], None

    def image(self, model, k, decode, img_prev):
        params, h = decode()
        if self.score:
            self.re.append(-model.img_log_prob(k, self.imgs[k], params))
        mean = model.dmol_mean(params, model.img_ch[k], model.cfg.mixtures)
        if k == model.cfg.scales:
            return model.refine(mean, h)
        self.mse_y = ((mean - self.imgs[k].float()) ** 2).flatten(1).mean(1)
        return straight_through(mean, torch.round(mean))  # the codec rounds it; gradients pass


class _RDWalker(Rec2Walker):
    """The rate-distortion objective's chain: latents quantized as `quant` says, their rates
    under the codec's own priors."""

    def __init__(self, imgs, steps, level_idx, quant: str, cgen: int):
        super().__init__(imgs, score=True)
        self.steps, self.level_idx, self.quant, self.cgen = steps, level_idx, quant, cgen
        self.out, self.rate_z = {}, 0.0

    def quantize(self, t, s, mean, log_scale):
        """-> (latent the rate is taken of, latent the decoders read); log_scale: the prior's,
        for "rdoq", which quantizes each image with its level's weight as the encoder does."""
        noisy = t + (torch.rand_like(t) - 0.5) * s
        rounded = round_around(t, mean, s)
        if self.quant == "noise":
            return noisy, noisy
        if self.quant == "round":
            return rounded, rounded
        # rounded in value; the gradient reaches t as the identity's and the step as the rounding
        # error's (t + s * (n - (t - mean) / s)): with straight_through(t, rounded) no distortion
        # reached the learned steps, only the rate, and they grew until the latents said nothing
        e = (t - mean) / s
        if self.quant == "rdoq":
            weight = torch.tensor([rdoq.weight_at(int(i) + 1) for i in self.level_idx], dtype=e.dtype)
            q = rdoq.choose(e.detach(), torch.exp(log_scale.detach()) / s, weight.view(-1, 1, 1, 1))
        else:
            q = torch.round(e)
        return noisy, t + s * (q - e).detach()

    def u(self, model):
        u_t, rate_v = model.q_u(self.imgs[0]), 0.0
        cm, cls = model.u_code_prior()
        if model.has_hyper:  # v̂ first; û's prior from it. Its rate counts as û's.
            vm, vls = model.v_code_prior()
            v_step = model.v_steps(self.level_idx)
            v_rate, v = self.quantize(model.q_v(u_t), v_step, vm, vls)
            rate_v = -GaussianConditional.log_prob(v_rate, vm, vls, v_step)
            cm, cls = model.u_code_prior(v, u_t.shape[-2:])
        self.rate_u, step = rate_v, self.steps[0]

        def one(part, m, ls):
            u_rate, u = self.quantize(part.of(u_t), part.step(step), m, ls)
            self.rate_u = self.rate_u - GaussianConditional.log_prob(u_rate, m, ls, part.step(step))
            return u

        u = chain.by_slices(model, 0, cm, cls, one)
        flow_trains = any(p.requires_grad for p in model.flow.parameters())
        self.out = {"rate_u": self.rate_u,
                    "flow_u": -model.flow.log_prob(u.detach()) if flow_trains else torch.zeros(len(u_t), device=u.device)}
        return u

    def z(self, model, k, prior, img_prev, prev):
        pm, pls = prior()
        n = self.cgen
        if k == model.cfg.scales and n:
            # the latent below detached: cgen's error must train the prior and the decoder, not make û
            # carry x's detail (the fast model's card: attached, û took most of the rate)
            y = self.imgs[k - 1][:n]
            c_pm, _ = model.p_z(k, y, prev[:n].detach())
            c_x = model.dmol_mean(model.p_img(k, c_pm, y), model.img_ch[k], model.cfg.mixtures)
            self.out["mse_cgen"] = ((c_x - self.imgs[k][:n].float()) ** 2).flatten(1).mean(1)
        z_t, step = model.q_z(k, self.imgs[k]), self.steps[k]

        def one(part, m, ls):
            z_rate, z = self.quantize(part.of(z_t), part.step(step), m, ls)
            self.rate_z = self.rate_z - GaussianConditional.log_prob(z_rate, m, ls, part.step(step))
            return z

        return chain.by_slices(model, k, pm, pls, one)

    def terms(self, xhat, x) -> dict:
        re, out = self.re, self.out
        mse_y = self.mse_y if self.mse_y is not None else torch.zeros(len(x), device=x.device)
        out.update(rate_z=self.rate_z, sse=((xhat - x.float()) ** 2).flatten(1).sum(1), re_x=re[-1],
                   re_y=sum(re[:-1]), mse_y=mse_y)
        return out


class _LosslessWalker(_TrueImages, _RDWalker):
    """The lossless file's chain: latents rounded as the codec codes them (rates under the
    codec's priors), every image the true one, scored under its staged and y-consistent
    likelihood: the terms the lossless layer's context nets learn from."""

    def __init__(self, imgs, steps, level_idx):
        super().__init__(imgs, steps, level_idx, "round", 0)

def level_steps(log2_steps: torch.Tensor, level_idx: torch.Tensor) -> torch.Tensor:
    """Rows `level_idx` (0-based, (B,)) of a (levels, C) table of learned log2 steps -> the
    steps training quantizes with, (B, C, 1, 1)."""
    return torch.exp2(log2_steps.float()[level_idx])[:, :, None, None]


def grid_steps(log2_steps: torch.Tensor, level, to_step=None):
    """Row `level` (1-based) of a (levels, C) table of learned log2 steps -> float64 steps on the
    1/256 grid (at least 1/256); to_step(log2 steps) replaces numpy's exp2. A fractional level
    (a Fraction on the 1/256 grid, codec/plans.py) takes log2 steps between its two rows
    (interpolate_log2)."""
    import numpy as np

    table = log2_steps.detach().double().cpu().numpy()
    whole = int(level)
    num = int((Fraction(level) - whole) * 256)
    v = interpolate_log2(table[whole - 1], table[whole], num) if num else table[whole - 1]
    return to_step(v) if to_step else np.maximum(np.rint(np.exp2(v) * 256.0), 1.0) / 256.0


LOG2_GRID = 1 << 10  # interpolated log2 steps lie on exact.py's activation grid (ACT_ONE), which step_from_log2 reads


def interpolate_log2(lo, hi, num: int):
    """The log2 steps num/256 of the way from row lo to row hi, on the 1/1024 grid: both rows
    rounded to it, then mixed in integers (round half up), so encoder and decoder get the same
    values on every machine whatever the float unit does."""
    import numpy as np

    a, b = (np.rint(np.asarray(r, np.float64) * LOG2_GRID).astype(np.int64) for r in (lo, hi))
    return ((a * (256 - num) + b * num + 128) >> 8) / float(LOG2_GRID)


def round_around(t, mean, step):
    """t rounded to the codec's grid of `step` around `mean`, as the codec quantizes latents."""
    return mean + step * torch.round((t - mean) / step)


def straight_through(t, value):
    """`value` in the forward pass, the identity's gradient in the backward pass."""
    return t + (value - t).detach()


def rd_loss(terms: dict, lambdas: torch.Tensor, pixels: int, nll_weight: float, y_weight: float = 0.0,
            cgen_weight: float = 0.0) -> torch.Tensor:
    """bits per pixel + lambda * MSE, per image at its level, plus nll_weight * the images'
    code lengths in bits per pixel (keeps cgen, crec and lossless usable), plus the flow's fit;
    plus lambda * y_weight * the MSE of ŷ (rec1's preview) and lambda * cgen_weight * the MSE
    of cgen's x̂ (on the images rd_forward decoded that way)."""
    ln2 = math.log(2)
    bpp = (terms["rate_u"] + terms["rate_z"]) / (pixels * ln2)
    mse = terms["sse"] / (3 * pixels)
    nll = (terms["re_x"] + terms["re_y"]) / (pixels * ln2)
    loss = (bpp + lambdas * (mse + y_weight * terms["mse_y"]) + nll_weight * nll + terms["flow_u"] / (pixels * ln2)).mean()
    if cgen_weight and "mse_cgen" in terms:
        n = len(terms["mse_cgen"])
        loss = loss + cgen_weight * (lambdas[:n] * terms["mse_cgen"]).sum() / len(lambdas)
    return loss


def loss_from_terms(terms: dict, dims: int, beta: float = 1.0, free_bits: float = 0.0) -> torch.Tensor:
    """Training loss in bits per dimension: -ELBO with KL terms weighted by beta (warm-up),
    plus the coding prior's own fit (which does not reach the encoder).

    free_bits (bits per dimension of x, per level): each z_k's batch-mean KL below this floor
    costs nothing, so the encoder can put detail into z before the decoder has learnt to use it
    (without it z collapses to the prior and rec2/crec add nothing to rec1/cgen)."""
    floor = free_bits * dims * math.log(2)
    kl_z = sum(v.mean().clamp(min=floor) for k, v in terms.items() if k[:4] == "kl_z" and k[4:].isdigit())
    rest = terms["re_x"] + terms["re_y"] + beta * terms["kl_u"] + terms["u_code"]
    return (rest.mean() + beta * kl_z) / (dims * math.log(2))


def bpd(terms: dict, dims: int) -> dict:
    """Mean of each term in bits per dimension of x."""
    return {k: float(v.detach().float().mean()) / (dims * math.log(2)) for k, v in terms.items() if k != "log_w"}
