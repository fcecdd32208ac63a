"""The fast network family of the selfVAE: the same chain and likelihoods as family.SelfVAE,
with Ballé-style transforms that spend their compute at 1/4 resolution and below.

- Every latent (u and each z_k) sits at 1/2^latent_down (1/16) of x.
- Encoders: a space-to-depth by 2, then 5x5 stride-2 convolutions with GDN.
- Decoders: 4x4 stride-2 transposed convolutions with inverse GDN up to 1/2 of the image, then
  a 1x1 head whose channels a pixel shuffle spreads over each 2x2 block: no layer runs at the
  image's full resolution.
- p(z_k | images[k-1], latent below) is computed at latent resolution from a strided encoding
  of the coarser image and the latent below, so u does for z what a hyperprior does.
- The decoder of images[k] sees images[k-1] twice (space-to-depth at 1/8 and at the head), and
  for the downscale transform its means are offsets from the upscaled images[k-1].
- With cfg.u_hyper, û has a hyperprior of its own: a latent v at 1/4 of û's side gives û a
  mean and scale per element (u does for z what a hyperprior does; v does it for u).

The paper's DenseNet networks (family.SelfVAE) stay for the density-estimation presets.
"""

import math
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..entropy.channel_context import ChannelContext
from ..entropy.checkerboard import CheckerboardContext
from ..entropy.dmol import DMoL
from ..entropy.pixel_context import PixelContext
from .base import FLOAT, STAGE_OF_PHASE, SelfVAE, grid_steps, level_steps, register_family, stage_mask
from ..nn.blocks import scale_image
from ..nn.flows import RealNVP
from ..nn.gdn import GDN


def conv_down(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 5, stride=2, padding=2)


def conv_up(cin: int, cout: int) -> nn.ConvTranspose2d:
    # 4x4, not 5x5: as good an upsampler (each output sees 2x2 inputs either way) and 1.5x
    # faster here, forward and backward
    return nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1)


def encoder(cin: int, cout: int, steps: int, width, res: int = 0) -> nn.Sequential:
    """From an image to a latent `steps` 2x steps below it: a space-to-depth by 2 (a strided
    convolution at the image's resolution costs much and learns little), then stride-2 5x5
    convolutions with GDN between them, each GDN followed by `res` residual blocks; width(i):
    the width i steps below the image."""
    mods, c = [nn.PixelUnshuffle(2)], 4 * cin
    extra = {}  # residual blocks under names of their own: the other layers keep their indices
    for i in range(1, steps):
        last = i == steps - 1
        w = cout if last else width(i + 1)
        mods.append(conv_down(c, w))
        if not last:
            mods.append(GDN(w))
            for j in range(res):
                extra[len(mods) - 1, j] = Residual(w)
        c = w
    named = []
    for n, m in enumerate(mods):
        named.append((str(n), m))
        named += [(f"res{n}_{j}", extra[n, j]) for j in range(res) if (n, j) in extra]
    return nn.Sequential(OrderedDict(named))


class Residual(nn.Module):
    """x + conv(relu(conv(x))), 3x3 layers of x's width; the second starts at zero, so a
    model gaining the block computes what it did."""

    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(ch, ch, 3, padding=1), nn.ReLU(), nn.Conv2d(ch, ch, 3, padding=1))
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, x):
        return x + self.body(x)


class ImageDecoder(nn.Module):
    """A latent at 1/2^steps of an image -> the image's DMoL parameters: steps - 1 transposed
    convolutions with IGDN up to 1/2 resolution, then a head that maps each feature vector to
    its 2x2 block of pixels (a head_k x head_k layer and a pixel shuffle). width(i): the width of the features i steps above the image's resolution.
    With a coarser image (`prev_ch` > 0), its space-to-depth joins the features after the
    first upsampling."""

    def __init__(self, cin: int, out_ch: int, steps: int, width, prev_ch: int = 0, prev_ratio: int = 1,
                 head_k: int = 1):
        super().__init__()
        if steps < 2:
            raise ValueError("the fast decoders need at least two 2x steps from latent to image")
        self.steps, self.prev_ratio, self.prev_ch = steps, prev_ratio, prev_ch
        self.ups, self.acts = nn.ModuleList(), nn.ModuleList()
        c = cin
        for i in range(steps - 1):
            w = width(steps - 1 - i)
            self.ups.append(conv_up(c, w))
            self.acts.append(nn.ReLU() if i == steps - 2 else GDN(w, inverse=True))
            c = w
        self.mix = None
        if prev_ch and steps > 2:
            f, w = self._factor(), width(steps - 1)
            self.mix = nn.Sequential(nn.Conv2d(w + prev_ch * f * f, w, 1), nn.ReLU())
        self.head = nn.Conv2d(c, 4 * out_ch, head_k, padding=head_k // 2)  # then a pixel shuffle (a 2x2 stride-2 transposed conv is 3x slower here)

    def _factor(self) -> int:
        """Side ratio between the coarser image and the features after the first upsampling."""
        return 2 ** (self.steps - 1) // self.prev_ratio

    def forward(self, lat, prev=None, features: bool = False):
        h = lat
        for i, (up, act) in enumerate(zip(self.ups, self.acts)):
            h = act(up(h))
            if i == 0 and self.mix is not None:
                h = self.mix(torch.cat([h, _space_to_depth(prev, self._factor()).to(h.dtype)], 1))
        out = F.pixel_shuffle(self.head(h), 2)
        return (out, h) if features else out


def refine_filter(feat_ch: int, layers: int, width: int) -> nn.Sequential:
    """A residual filter on x̂ at full resolution (3x3 layers of `width`), reading x̂ and the x
    decoder's features spread over each 2x2 block (a pixel shuffle): the only layers at full
    resolution, a decoder-side cleanup of what the latents' quantization leaves."""
    if feat_ch % 4:
        raise ValueError(f"refine reads the features by 2x2 blocks: {feat_ch} channels are not a multiple of 4")
    return _residual_layers(3 + feat_ch // 4, 3, layers, width)


def half_res_filter(feat_ch: int, layers: int, width: int) -> nn.Sequential:
    """A residual filter on x̂ at half resolution: x̂ as a space-to-depth (12 channels) beside the
    x decoder's features, 3x3 layers of `width`, the 2x2 blocks' corrections out."""
    return _residual_layers(12 + feat_ch, 12, layers, width)


def _residual_layers(in_ch: int, out_ch: int, layers: int, width: int) -> nn.Sequential:
    """3x3 layers of `width` with ReLUs, then one to out_ch that starts at zero (a model gaining
    the filter decodes as before)."""
    mods, c = [], in_ch
    for _ in range(layers):
        mods += [nn.Conv2d(c, width, 3, padding=1), nn.ReLU()]
        c = width
    mods.append(nn.Conv2d(c, out_ch, 3, padding=1))
    nn.init.zeros_(mods[-1].weight)
    nn.init.zeros_(mods[-1].bias)
    return nn.Sequential(*mods)


def _space_to_depth(img, factor: int):
    return F.pixel_unshuffle(img, factor) if factor > 1 else img


def _live_inputs(inp, stage: int) -> torch.Tensor:
    """Indices of the stage context's input channels (features, known pixels as a space-to-depth
    by 2, coarser image) that may be nonzero: the known pixels' channel c * 4 + phase is live
    only for a phase of an earlier stage."""
    feat, n_known = inp[0].shape[1], inp[1].shape[1]
    known = [feat + i for i in range(n_known) if STAGE_OF_PHASE[i % 4] < stage]
    rest = sum(t.shape[1] for t in inp[2:])
    return torch.tensor(list(range(feat)) + known + list(range(feat + n_known, feat + n_known + rest)))


class PriorNet(nn.Module):
    """(mean, log_scale) of z_k at latent resolution from the coarser image (space-to-depth by
    2, then strided convolutions with GDN) and the latent below."""

    def __init__(self, img_ch: int, img_steps: int, lat_ch: int, ch: int, z_ch: int):
        super().__init__()
        mods, c = [], 4 * img_ch
        for i in range(img_steps - 1):
            mods.append(conv_down(c, ch))
            if i < img_steps - 2:
                mods.append(GDN(ch))
            c = ch
        if img_steps == 1:
            mods.append(nn.Conv2d(c, ch, 3, padding=1))
        self.img = nn.Sequential(*mods)
        self.lat = nn.Conv2d(lat_ch, ch, 3, padding=1)
        self.head = nn.Sequential(
            nn.Conv2d(2 * ch, ch, 3, padding=1), nn.ReLU(), nn.Conv2d(ch, ch, 3, padding=1), nn.ReLU(),
            nn.Conv2d(ch, 2 * z_ch, 1))

    def forward(self, img, lat):
        h = torch.cat([self.img(F.pixel_unshuffle(img, 2)), self.lat(lat)], 1)
        return self.head(torch.relu(h))


class HyperSynthesis(nn.Module):
    """v̂ -> offsets of û's (mean, log_scale) from its factorized prior, cropped to û's size.
    The last layer starts at zero, so a model gaining a hyperprior starts where it was."""

    def __init__(self, v_ch: int, ch: int, u_ch: int):
        super().__init__()
        self.body = nn.Sequential(conv_up(v_ch, ch), nn.ReLU(), conv_up(ch, ch), nn.ReLU(),
                                  nn.Conv2d(ch, 2 * u_ch, 3, padding=1))
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, v, size):
        return self.body(v)[..., :size[0], :size[1]]


def hyper_side(n: int) -> int:
    """v's side for a û of side n: two stride-2 convolutions that round up."""
    return ((n + 1) // 2 + 1) // 2


@register_family("fast")
class FastSelfVAE(SelfVAE):
    """The selfVAE with the fast networks (widths: see width_at)."""

    LEVEL_LISTS = ("enc_z", "prior", "dec", "z_context", "context")

    def _build_networks(self):
        cfg, K, L = self.cfg, self.cfg.scales, self.cfg.latent_down
        q, n = (2 if cfg.posterior == "gaussian" else 1), cfg.mixtures
        r_total = int(math.log2(self.ratio ** K))
        if L - r_total < 2:
            raise ValueError(f"latent_down must be at least {r_total + 2} for {K} level(s) of this transform")
        # steps_of[k]: 2x steps from images[k] down to the latents' resolution (1/2^L of x)
        self.steps_of = [L - int(math.log2(self.ratio ** (K - k))) for k in range(K + 1)]

        def width_for(k):  # width of images[k]'s features i steps below its resolution
            return lambda i: self.width_at(2 ** (L - self.steps_of[k] + i))

        self.enc_u = encoder(self.img_ch[0], q * cfg.u_ch, self.steps_of[0], width_for(0), cfg.enc_res)
        self.dec_0 = ImageDecoder(cfg.u_ch, DMoL.channels(self.img_ch[0], n), self.steps_of[0], width_for(0),
                                  head_k=cfg.head_k)
        self.enc_z, self.prior, self.dec = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for k in range(1, K + 1):
            prev_lat = cfg.u_ch if k == 1 else cfg.z_ch
            self.enc_z.append(encoder(self.img_ch[k], q * cfg.z_ch, self.steps_of[k], width_for(k), cfg.enc_res))
            self.prior.append(PriorNet(self.img_ch[k - 1], self.steps_of[k - 1], prev_lat, cfg.ch, cfg.z_ch))
            self.dec.append(ImageDecoder(cfg.z_ch, DMoL.channels(self.img_ch[k], n), self.steps_of[k], width_for(k),
                                         self.img_ch[k - 1], self.ratio, cfg.head_k))
        self.flow = RealNVP(cfg.u_ch, cfg.flow_hidden, cfg.flow_blocks)
        if cfg.refine:
            if K < 1:
                raise ValueError("refine needs a selfVAE (levels >= 1): it reads the x decoder's features")
            self.refine_net = refine_filter(self.dec[-1].head.in_channels, cfg.refine, cfg.refine_ch)
        if cfg.refine_half:
            if K < 1:
                raise ValueError("refine_half needs a selfVAE (levels >= 1): it reads the x decoder's features")
            self.refine_half_net = half_res_filter(self.dec[-1].head.in_channels, cfg.refine_half, cfg.refine_half_ch)
        if cfg.x_context:  # lossless x: images[k >= 1] coded in stages (entropy/pixel_context.py)
            self.context = nn.ModuleList(self._pixel_context(k, cfg.x_context) for k in range(1, K + 1))
        if cfg.y_context:
            self.context0 = self._pixel_context(0, cfg.y_context)
        if cfg.u_hyper:
            if not cfg.rd_lambdas:
                raise ValueError("the hyperprior for û (u_hyper) is for rate-distortion models")
            v, ch = cfg.u_hyper, cfg.ch
            self.hyper_a = nn.Sequential(nn.Conv2d(cfg.u_ch, ch, 3, padding=1), nn.ReLU(), conv_down(ch, ch), nn.ReLU(),
                                         conv_down(ch, v))
            self.hyper_s = HyperSynthesis(v, ch, cfg.u_ch)
            self.v_code_mean = nn.Parameter(torch.zeros(1, v, 1, 1))
            self.v_code_log_scale = nn.Parameter(torch.zeros(1, v, 1, 1))
            self.v_log2_step = nn.Parameter(torch.zeros(len(cfg.rd_lambdas), v))  # per level, as rd_log2_step
        if cfg.u_slices or cfg.z_slices or cfg.checkerboard:
            if (cfg.u_slices or cfg.checkerboard) and not cfg.u_hyper:
                raise ValueError("a context for û (u_slices, checkerboard) needs its hyperprior (u_hyper): a prior per element")
            if not cfg.rd_lambdas:
                raise ValueError("latent contexts (u_slices, z_slices, checkerboard) are for rate-distortion models")
            if cfg.checkerboard and (cfg.u_slices or cfg.z_slices):
                raise ValueError("a latent has one context: channel slices (u_slices, z_slices) or checkerboard")
            if cfg.checkerboard:
                self.u_context = CheckerboardContext(cfg.u_ch, cfg.slice_ch)
                self.z_context = nn.ModuleList(CheckerboardContext(cfg.z_ch, cfg.slice_ch) for _ in range(K))
            if cfg.u_slices:
                self.u_context = ChannelContext(cfg.u_ch, cfg.u_slices, cfg.slice_ch)
            if cfg.z_slices:
                self.z_context = nn.ModuleList(ChannelContext(cfg.z_ch, cfg.z_slices, cfg.slice_ch) for _ in range(K))

    def refine(self, xhat, h):
        """The final x̂ (0..255) after the residual filters, given the x decoder's features."""
        if self.cfg.refine:
            r = self.refine_net(torch.cat([scale_image(xhat), F.pixel_shuffle(h, 2)], 1).to(h.dtype))
            xhat = xhat + 127.5 * r.float()
        if self.cfg.refine_half:
            r = self.refine_half_net(torch.cat([F.pixel_unshuffle(scale_image(xhat), 2), h], 1).to(h.dtype))
            xhat = xhat + 127.5 * F.pixel_shuffle(r, 2).float()
        return xhat

    def _pixel_context(self, k: int, layers: int) -> PixelContext:
        """images[k]'s context nets: they read its decoder's features (at half its resolution),
        its known pixels and, for k >= 1, the coarser image brought to that resolution."""
        dec = self.dec_0 if k == 0 else self.dec[k - 1]
        prev = self.img_ch[k - 1] * (2 // self.ratio) ** 2 if k >= 1 else 0
        return PixelContext(dec.head.in_channels, 4 * self.img_ch[k] + prev,
                            DMoL.channels(self.img_ch[k], self.cfg.mixtures), self.cfg.context_ch, layers,
                            skip=self.cfg.context_skip)

    def _stage_params(self, a, k, stage, params, h, img, img_prev):
        if not self.staged(k):
            return params
        known = stage_mask(stage, *img.shape[-2:], img.device, before=True)
        pixels = a.image(img)
        inp = [a.latent(h), F.pixel_unshuffle(torch.where(known, pixels, pixels.new_zeros(())), 2)]
        if k >= 1:
            inp.append(_space_to_depth(a.image(img_prev), 2 // self.ratio))
        ctx = a.net(self, "context")[k - 1] if k >= 1 else a.net(self, "context0")
        x = torch.cat([t.to(inp[0].dtype) for t in inp], 1)
        phases = [p for p, s in enumerate(STAGE_OF_PHASE) if s == stage]
        corr = F.pixel_shuffle(a.out(ctx(stage, x, phases, _live_inputs(inp, stage))), 2).to(params.dtype)
        if self.cfg.centred_coupling:
            return DMoL.add_centred(params, corr, self.img_ch[k], self.cfg.mixtures, a.coupling)
        return params + corr

    def staged_image(self, k, params, h, img_prev, draw):
        """One pass: the pixel context is for coding images exactly; the point estimates the
        lossy modes decode to (and generation) stay the decoder's own."""
        return draw(params)

    def latent_context(self, k: int):
        if k == 0:
            return getattr(self, "u_context", None)
        return self.z_context[k - 1] if hasattr(self, "z_context") else None

    @property
    def has_hyper(self) -> bool:
        return bool(self.cfg.u_hyper)

    def q_v(self, u):
        """v (continuous) from û's posterior mean."""
        return self.hyper_a(u).float()

    def v_code_prior(self):
        return self._v_code_prior(FLOAT)

    def _v_code_prior(self, a):
        return a.param(self.v_code_mean), a.grid(a.param(self.v_code_log_scale).clamp(-6.0, 6.0))

    def v_shape(self, u_shape) -> tuple:
        return (u_shape[0], self.cfg.u_hyper, hyper_side(u_shape[2]), hyper_side(u_shape[3]))

    def _u_code_prior(self, a, v=None, size=None):
        mean, log_scale = a.param(self.u_code_mean), a.param(self.u_code_log_scale)
        if v is not None:
            dm, dls = a.out(a.net(self, "hyper_s")(a.latent(v), size)).chunk(2, 1)
            mean, log_scale = mean + dm, log_scale + dls
        return mean, a.grid(log_scale.clamp(-6.0, 6.0))

    def v_steps(self, level_idx: torch.Tensor) -> torch.Tensor:
        """v's quantization steps for 0-based levels (B,): (B, Cv, 1, 1)."""
        return level_steps(self.v_log2_step, level_idx)

    def v_coding_steps(self, level: int, to_step=None):
        """v's steps at a level (1-based) as coding_steps gives û's: float64 (1, Cv, 1, 1) on the 1/256 grid."""
        return grid_steps(self.v_log2_step, level, to_step)[None, :, None, None]

    def width_at(self, div: int) -> int:
        """Feature width at 1/div of x: cfg.ch at 1/8 and below, mid_ch at 1/4, head_ch above."""
        cfg = self.cfg
        return cfg.ch if div >= 8 else (cfg.mid_ch if div == 4 else cfg.head_ch)

    @property
    def multiple(self) -> int:
        """What the image's sides are padded to: the latents' factor (twice it under a
        checkerboard context, whose halves need latents of even sides)."""
        return 2 ** (self.cfg.latent_down + bool(self.cfg.checkerboard))

    @property
    def u_down(self) -> int:
        return self.steps_of[0]

    def table_nets(self) -> tuple:
        return ("dec_0", "prior", "dec") + tuple(
            n for n in ("hyper_s", "u_context", "z_context", "context", "context0") if hasattr(self, n))

    def _p_img0(self, a, u):
        params, h = a.net(self, "dec_0")(a.latent(u), features=True)
        return a.out(params), a.out(h)

    def _p_z(self, a, k, img_prev, prev_latent):
        mean, log_scale = a.out(a.net(self, "prior")[k - 1](a.image(img_prev), a.latent(prev_latent))).chunk(2, 1)
        return mean, log_scale.clamp(-6.0, 6.0)

    def _p_img(self, a, k, z, img_prev):
        prev = a.image(img_prev)
        params, h = a.net(self, "dec")[k - 1](a.latent(z), prev, features=True)
        params, h = a.out(params), a.out(h)
        if self.cfg.transform == "downscale":
            params = self.offset_means(params, a.out(prev), k)
        return params, h
