"""Which variables each mode sends or infers, and the one chain of the selfVAE that the
encoder and the decoder both walk, so what the decoder reconstructs is what the encoder
predicted.

The chain, coarsest first, for a model with K self-supervised images (images[K] = x):
    û  -> images[0] | û  -> z_1 -> images[1] | images[0], z_1 -> ... -> x | images[K-1], z_K
A plan says which image is sent losslessly (`sent`, -1 for none) and whether the latents
above it are sent (`send_z`) or inferred (the prior's mean). Images above `sent` are the
point estimate (mixture mean) of their likelihood.
"""

import functools
import struct
import zlib
from contextlib import contextmanager, nullcontext

import numpy as np
import torch
import torch.nn.functional as F

from ..model import exact as X
from ..errors import CodecError
from ..model import chain
from ..model.chain import Walker
from ..entropy import rdoq
from ..entropy.coder import Coder
from ..entropy.dmol import DMoL
from ..entropy.gaussian import GaussianConditional, scale_index
from ..model.base import STAGE_OF_PHASE, interpolate_log2, phase_planes
from .plans import MODE_CODES, MODE_NAMES, Plan, level_parts, plan_for, stream_names  # noqa: F401 (the codec's names for them)
from .layered import latent_layers, layer_names
from ..metrics import mse
from .search import file_score, search_latents
from . import smoothing


# level -> (quantization step of the latents that shape the reconstruction, bin width of a lossy y);
# a rate-distortion model (cfg.rd_lambdas) learns its own latent steps per level instead
LEVELS = {1: (2.0, 16), 2: (1.5, 8), 3: (1.0, 4), 4: (0.75, 2), 5: (0.5, 1), 6: (0.35, 1), 7: (0.25, 1)}
DEFAULT_LEVEL = 3


def level_count(model) -> int:
    """The levels a model codes at: one per λ of a rate-distortion model, else LEVELS'."""
    return min(len(model.cfg.rd_lambdas), len(LEVELS)) if model.cfg.rd_lambdas else len(LEVELS)


def latent_step(level) -> float:
    """An ELBO model's latent step at a level. A fractional level's lies between its two levels'
    in log2 (interpolate_log2, then exact.step_from_log2's table): the same number on every
    machine. (LEVELS' log2 steps times 1024 are 599.002, -424.998, -1550.92, ... before rounding:
    far from a tie, so any libm rounds them alike.)"""
    whole, num = level_parts(level)
    if not num:
        return LEVELS[whole][0]
    if whole + 1 not in LEVELS:
        raise CodecError(f"level {float(level):g} does not exist; the levels go from 1 to {len(LEVELS)}")
    v = interpolate_log2(np.log2([LEVELS[whole][0]]), np.log2([LEVELS[whole + 1][0]]), num)
    return float(X.step_from_log2(v)[0])


def y_bin(level) -> int:
    """The bin width of a lossy y (cgen, crec) at a level; a fractional level's is its whole level's."""
    return LEVELS[int(level)][1]


def modes_for(levels: int) -> list:
    return [m for m in MODE_CODES if _has(m, levels)]


def _has(mode, levels):
    try:
        plan_for(mode, levels)
        return True
    except CodecError:
        return False


def has_upscale_choice(model, plan: Plan) -> bool:
    """Whether a tile may carry, instead of the model's x̂, the bicubic upscale of the image it
    sends (cgen and crec of a downscale model): the encoder, which has x, sends the closer of
    the two, so these modes are never worse than that upscale. One symbol says which."""
    return model.cfg.transform == "downscale" and 0 <= plan.sent < model.cfg.scales


def has_layered_choices(model) -> bool:
    """Whether a layered file's prefixes that end at an image below x (crec's) carry the choice too."""
    return model.cfg.transform == "downscale" and model.cfg.scales >= 1


def upscale_sent(model, img: torch.Tensor, sent: int, valid: tuple | None = None) -> torch.Tensor:
    """images[sent] brought to x's size by one bicubic upscale (a = -0.75, as OpenCV's INTER_CUBIC)
    of its part over the tile's `valid` (h, w) pixels, so the padding does not reach the image."""
    factor = model.ratio ** (model.cfg.scales - sent)
    H, W = img.shape[-2] * factor, img.shape[-1] * factor
    if valid is not None:
        img = img[..., :-(-valid[0] // factor), :-(-valid[1] // factor)]
    up = F.interpolate(img.float(), scale_factor=factor, mode="bicubic", align_corners=False)
    return F.pad(up, (0, W - up.shape[-1], 0, H - up.shape[-2]), mode="replicate")


_CHOICE_IDX = scale_index(np.array([0.5]))  # the choice symbol's table (0: x̂, 1: the upscale): about a bit


def _int_bytes(sym: np.ndarray) -> bytes:
    return np.ascontiguousarray(sym, dtype="<i4").tobytes()


def image_crc(img: torch.Tensor, crc: int = 0) -> int:
    """CRC-32 of an image's integers as the coder sees them (pixels row-major, channels last)."""
    return zlib.crc32(_pixels(img).tobytes(), crc)


def combine_crcs(per_tile: list) -> list:
    """Per-tile CRC lists (one per layer) -> one CRC per layer: CRC-32 of the tiles' CRCs in order."""
    return [zlib.crc32(b"".join(struct.pack("<I", t[i]) for t in per_tile)) for i in range(len(per_tile[0]))]


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float64).cpu().numpy()


def _dmol_arrays(params: torch.Tensor, c: int, k: int, exact: bool = False):
    """(1, P, h, w) -> DMoL's per-pixel arrays; `exact`: the coupling's tanh from exact.tanh_coef's table."""
    return DMoL.arrays(params, c, k, X.tanh_coef if exact else None)


def _latent_tables(mean: torch.Tensor, log_scale: torch.Tensor, step: float, exact: bool = False):
    """Quantized prior mean (float64) and Gaussian table index of each latent element; `exact`:
    exp of the log-scale (on the exact path's grid) from exact.exp_of's table, not libm's."""
    ls = _np(log_scale)
    return GaussianConditional.tables(_np(mean), X.exp_of(ls) if exact else np.exp(ls), step)


def _posterior_mean(params: torch.Tensor, gaussian: bool) -> torch.Tensor:
    return params.chunk(2, 1)[0] if gaussian else params


class _CRCs:
    """A side's CRC-32 of every integer it codes (latents, then images, in walk order); image()
    is the side's _image() and its CRC (the last image it returned: `sent`). exact: the tables
    come from the exact path (exact.ExactModel's outputs). choices: the tile's upscale choices
    (None: the file has none; see has_upscale_choice), which code_choices(n) codes."""

    exact, crc, choices, sent, valid = False, 0, None, None, None  # valid: the tile's (h, w) without padding

    def code_latent(self, model, k, posterior_mean, mean, log_scale, step, layer=0):
        """Latent k (0: û, k >= 1: ẑ_k) through this side, slice by slice under its prior
        (chain.by_slices; one slice for a model without a channel context); posterior_mean() ->
        the whole latent, which only the encoder evaluates."""
        whole = self.value_of(posterior_mean)
        return chain.by_slices(model, k, mean, log_scale,
                               lambda part, m, ls: self.latent(lambda: part.of(whole()), m, ls, part.step(step), layer))

    def value_of(self, posterior_mean):
        """A thunk of the latent the side codes: the decoder never evaluates it."""
        return posterior_mean

    def image(self, *args, **kwargs):
        self.sent = self._image(*args, **kwargs)
        self._coded_image(self.sent)
        return self.sent

    def _coded(self, sym, layer):
        self.crc = zlib.crc32(_int_bytes(sym), self.crc)

    def _coded_image(self, img):
        self.crc = image_crc(img, self.crc)


class _LayerCRCs(_CRCs):
    """The CRCs of a layered side: one per latent layer, then one per image."""

    def _coded(self, sym, layer):
        self.crcs[layer] = zlib.crc32(_int_bytes(sym), self.crcs[layer])

    def _coded_image(self, img):
        self.crcs.append(image_crc(img))


class _Encoder(_CRCs):
    """Walks the chain with the true image: quantizes and codes what the plan sends.
    streams[0] is the latents' stream, written by finish() once every latent is known."""

    def __init__(self, imgs, level: int, searched=None):
        self.imgs, self.streams, self.bits = imgs, [b""], [0.0]
        self.rdoq_weight = rdoq.weight_at(level)
        self.latents = []  # (symbols, table indices) in decode order
        self.shape0 = tuple(imgs[0].shape[-2:])  # height and width of images[0]
        self.searched = list(searched or [])  # latents found by search.search_latents, in walk order

    def value_of(self, posterior_mean):
        """The latent to code, once per latent: the search's, if it ran, else the posterior's mean."""
        if self.searched:
            value = self.searched.pop(0)
            return lambda: value
        return functools.cache(posterior_mean)

    def latent(self, posterior_mean, mean, log_scale, step, layer=0):
        m, idx = _latent_tables(mean, log_scale, step, self.exact)
        value = posterior_mean()
        sym = rdoq.symbols((_np(value) - m) / step, idx, self.rdoq_weight)
        self._coded(sym, layer)
        self._keep(sym, idx, layer)
        return torch.from_numpy(m + step * sym).float()

    def _keep(self, sym, idx, layer):
        self.latents.append((sym, idx))
        self.bits[0] += GaussianConditional.bits(sym, idx)

    def code_choices(self, n: int) -> list:
        """Code the upscale choices set before (self.choices, n of them) in the latents' stream(s)."""
        for c in self.choices:
            sym = np.array([int(c)], dtype=np.int64)
            self._coded(sym, 0)
            self._keep(sym, _CHOICE_IDX, 0)
        return self.choices

    def finish(self):
        coder = Coder()
        for sym, idx in reversed(self.latents):  # a stack: the first decoded goes on last
            GaussianConditional.encode(sym, idx, coder)
        self.streams[0] = coder.to_bytes()

    def _image(self, k, params, c, mixtures, step, y=None, stage=None):
        v = _pixels(self.imgs[k])
        arrays = functools.cache(lambda: _dmol_arrays(params, c, mixtures, self.exact))
        if y is None and stage is None:
            coder = Coder()
            self.bits.append(DMoL.encode(coder, v, arrays(), step))
            self.streams.append(coder.to_bytes())
            return _to_image(DMoL.bin_values(v, step) if step > 1 else v, self.imgs[k].shape)
        sections = _sections(*self.imgs[k].shape[-2:], staged=stage is not None)
        coder, bits = Coder(), 0.0  # a stack: the last section goes on first
        for s in reversed(range(len(sections))):
            table = _section_arrays(arrays, stage, s, sections[s], self.imgs[k], c, mixtures, self.exact)
            sv = v[sections[s]]
            if y is not None and s == len(sections) - 1:  # the last pixel of each block, given y
                lo, hi = _last_range(self.imgs[k], y)
                bits += DMoL.encode_ranged(coder, sv, lo, hi, table)
            else:
                bits += DMoL.encode(coder, sv, table)
        self.streams.append(coder.to_bytes())
        self.bits.append(bits)
        return _to_image(v, self.imgs[k].shape)


class _Decoder(_CRCs):
    def __init__(self, streams, shape0):
        self.streams, self.shape0 = list(streams), shape0
        self.latents = Coder(self._next())

    def _next(self):
        if not self.streams:
            raise CodecError("the file has fewer streams than its mode needs")
        return self.streams.pop(0)

    def latent(self, posterior_mean, mean, log_scale, step, layer=0):
        m, idx = _latent_tables(mean, log_scale, step, self.exact)
        sym = GaussianConditional.decode(self._coder(layer), idx)
        self._coded(sym, layer)
        return torch.from_numpy(m + step * sym).float()

    def _coder(self, layer):
        return self.latents

    def code_choices(self, n: int) -> list:
        """Decode n upscale choices from the latents' stream (layer 0's in a layered file)."""
        self.choices = []
        for _ in range(n):
            sym = GaussianConditional.decode(self._coder(0), _CHOICE_IDX)
            if sym[0] not in (0, 1):
                raise CodecError(f"corrupt stream: upscale choice {int(sym[0])} (0 or 1 expected)")
            self._coded(sym, 0)
            self.choices.append(bool(sym[0]))
        return self.choices

    def finish(self):
        self.latents.check_done()
        if self.streams:
            raise CodecError("the file has more streams than its mode needs")

    def _image(self, k, params, c, mixtures, step, y=None, stage=None):
        arrays = functools.cache(lambda: _dmol_arrays(params, c, mixtures, self.exact))
        shape = (1, c, params.shape[2], params.shape[3])
        if y is None and stage is None:
            coder = Coder(self._next())
            v = DMoL.decode(coder, arrays(), step)
            coder.check_done()
            return _to_image(v, shape)
        sections = _sections(*shape[-2:], staged=stage is not None)
        coder = Coder(self._next())
        v = np.zeros((shape[2] * shape[3], c), dtype=np.uint8)
        for s, idx in enumerate(sections):
            table = _section_arrays(arrays, stage, s, idx, _to_image(v, shape), c, mixtures, self.exact)
            if y is not None and s == len(sections) - 1:
                v[idx] = DMoL.decode_ranged(coder, *_last_range(_to_image(v, shape), y), table)
            else:
                v[idx] = DMoL.decode(coder, table)
        coder.check_done()
        return _to_image(v, shape)


class _LayeredEncoder(_LayerCRCs, _Encoder):
    """An encoder that keeps each latent layer (û; every ẑ) in a stream of its own, then the
    images, and a CRC of each layer's coded integers."""

    def __init__(self, imgs, n_latent_layers, level: int, searched=None):
        super().__init__(imgs, level, searched)
        self.streams, self.bits = [b""] * n_latent_layers, [0.0] * n_latent_layers
        self.by_layer = [[] for _ in range(n_latent_layers)]
        self.crcs = [0] * n_latent_layers

    def _keep(self, sym, idx, layer):
        self.by_layer[layer].append((sym, idx))
        self.bits[layer] += GaussianConditional.bits(sym, idx)

    def finish(self):
        for i, latents in enumerate(self.by_layer):
            coder = Coder()
            for sym, idx in reversed(latents):
                GaussianConditional.encode(sym, idx, coder)
            self.streams[i] = coder.to_bytes()
        self.by_layer = None  # coded (a tiled file keeps every tile's side until its last is coded)


class _LayeredDecoder(_LayerCRCs, _Decoder):
    def __init__(self, streams, shape0, n_latent_layers):
        self.streams, self.shape0 = list(streams), shape0
        self.coders = [Coder(self._next()) for _ in range(n_latent_layers)]
        self.crcs = [0] * n_latent_layers

    def _coder(self, layer):
        return self.coders[layer]

    def finish(self):
        for coder in self.coders:
            coder.check_done()
        if self.streams:
            raise CodecError("the file has more streams than its mode needs")


def _pixels(img: torch.Tensor) -> np.ndarray:
    """(1, C, H, W) -> uint8 (H*W, C), pixels row-major (the order DMoL.encode codes them)."""
    return img[0].permute(1, 2, 0).reshape(-1, img.shape[1]).numpy().astype(np.uint8)


def _sections(h: int, w: int, staged: bool) -> list:
    """Row-major pixel indices of an image with even h, w, in the order they are decoded: for a
    staged model the pixels of each stage (model.base.STAGE_OF_PHASE); otherwise all but the
    bottom-right pixel of each 2x2 block, then those last pixels (coded given the other three
    and the block's mean)."""
    phase = phase_planes(h, w)[0].argmax(0).flatten().numpy()
    stage_of = np.array(STAGE_OF_PHASE if staged else (0, 0, 0, 1))[phase]
    return [np.flatnonzero(stage_of == s) for s in range(stage_of.max() + 1)]


def _section_arrays(arrays, stage, s, idx, img, c, mixtures, exact=False):
    """The DMoL arrays of section s's pixels (row-major indices idx): stage s's given the pixels
    in img of the sections before it, or arrays()' (p(x | y, z)'s) where the stage keeps those (a
    model without stages, the DenseNet family's first stage). Encoder and decoder both call
    this, so they build the same tables; a stage's are built for its own pixels alone (per
    pixel, the same numbers), which keeps a tile's working set to one section's."""
    p = stage(s, img) if stage is not None else None
    if p is None:
        return _take(arrays(), idx)
    return _dmol_arrays(p.flatten(2)[:, :, torch.from_numpy(idx)].unsqueeze(-1), c, mixtures, exact)


def _last_range(img: torch.Tensor, y: torch.Tensor):
    """(lo, hi) int64 (H/2*W/2, C) of each block's last pixel given the other three and y."""
    return tuple(_pixels(t).astype(np.int64) for t in DMoL.block_mean_range(img, y))


def _take(arrays, idx):
    return tuple(a[idx] for a in arrays)


def _to_image(v: np.ndarray, shape) -> torch.Tensor:
    _, c, h, w = shape
    return torch.from_numpy(np.ascontiguousarray(v).astype(np.float32)).reshape(1, h, w, c).permute(0, 3, 1, 2).contiguous()


def latent_steps_rd(model, level: int):
    """A rate-distortion model's learned steps per latent channel at `level` ([u, z_1, ..]), or
    None for an ELBO model (whose steps come from LEVELS). Every mode of an RD model quantizes
    its latents with the level's steps: they are what it was trained with."""
    n = len(model.cfg.rd_lambdas)
    if not n:
        return None
    if not 1 <= level <= n:
        raise CodecError(f"level {float(level):g} does not exist for this model; choose 1 to {n}")
    return model.coding_steps(level)


def _code_u(model, side, step, level):
    """û through `side` (coded by the encoder, decoded by the decoder) under its factorized
    prior; for a model with a hyperprior, v̂ first (under its own), then û under the prior from v̂."""
    imgs = getattr(side, "imgs", None)  # only the encoder evaluates the posteriors
    h0, w0 = side.shape0
    shape = (1, model.cfg.u_ch, h0 >> model.u_down, w0 >> model.u_down)
    u_mean = functools.cache(lambda: _posterior_mean(model.q_u(imgs[0]), model.cfg.posterior == "gaussian"))
    if model.has_hyper:
        vm, vls = model.v_code_prior()
        v_shape = model.v_shape(shape)
        v = side.latent(side.value_of(lambda: model.q_v(u_mean())), vm.expand(v_shape), vls.expand(v_shape),
                        model.v_coding_steps(level))
        cm, cls = model.u_code_prior(v, shape[-2:])
    else:
        cm, cls = model.u_code_prior()
    return side.code_latent(model, 0, u_mean, cm.expand(shape), cls.expand(shape), step)


def plain_steps(model, plan: Plan, level) -> list:
    """A plain file's quantization steps of û and each ẑ_k: a rate-distortion model's learned ones;
    an ELBO model's from the level, 1 for a latent below an image sent exactly."""
    learned = latent_steps_rd(model, level)
    if learned:
        return list(learned)
    return [latent_step(level) if plan.sent < 0 else 1.0] + [
        1.0 if k <= plan.sent else latent_step(level) for k in range(1, model.cfg.scales + 1)]


def _prior_means(model, k, mean, log_scale):
    """A latent that is not sent: its prior's mean (slice by slice under a channel context)."""
    return chain.by_slices(model, k, mean, log_scale, lambda part, m, ls: m)


def _z_mean(model, k, side):
    """A thunk of ẑ_k's posterior mean, which only the encoder (holding the true images) evaluates."""
    imgs = getattr(side, "imgs", None)
    return lambda: _posterior_mean(model.q_z(k, imgs[k]), model.cfg.posterior == "gaussian")


def _stages(model, k, params, h, img_prev):
    """For a staged images[k] sent exactly: stage(s, img) -> the parameters of stage s's pixels
    given the earlier ones in img; None for a model that codes images[k] in one pass."""
    if not model.staged(k):
        return None

    def stage(s, img):
        p = model.stage_params(k, s, params, h, img, img_prev)
        return None if p is params else p  # (None: the decoder's own parameters)
    return stage


def _tile_tensor(tile: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(tile, dtype=np.float32)).permute(2, 0, 1)[None]


def _point(model, k, params, h, img_prev, how):
    """images[k]'s point estimate; on the exact path, below x (where the next prior reads it)
    computed exactly from the parameters as the coder quantizes them."""
    c, n = model.img_ch[k], model.cfg.mixtures
    if getattr(model, "exact", False):
        if k < model.cfg.scales:
            return model.staged_image(k, params, h, img_prev, lambda p: X.dmol_point(p, c, n, how).float())
        # x̂: the float model's own stages (from the float synthesis, or the VAE's exact p(x | û))
        model, params, h = model._model, params.float(), h.float()
    return model.staged_image(k, params, h, img_prev, lambda p: DMoL.point(p, c, n, how))


class _CodingWalker(Walker):
    """The chain as a plain file codes it: `side` (an _Encoder, which holds the true images, or a
    _Decoder) codes û, the ẑ the plan sends and the images it sends; the others are the prior's
    mean and the likelihood's point estimate. An upscale choice, first in the stream, may end
    the chain at the image sent."""

    def __init__(self, plan: Plan, level: int, side, how: str, need_x: bool = True):
        self.plan, self.level, self.side, self.how, self.need_x = plan, level, side, how, need_x
        self.upscale, self.h = None, None

    def u(self, model):
        self.steps = plain_steps(model, self.plan, self.level)
        # first in the stream; True: x̂ is the upscale of the image sent, and no ẑ above it is sent
        self.chosen = self.side.choices is not None and self.side.code_choices(1)[0]
        self.u_hat = _code_u(model, self.side, self.steps[0], self.level)
        return self.u_hat

    def stop(self, model, k, imgs):
        if self.chosen and k == self.plan.sent + 1:
            self.upscale = upscale_sent(model, imgs[self.plan.sent], self.plan.sent, self.side.valid)
            return True
        return False

    def z(self, model, k, prior, img_prev, prev):
        pm, pls = prior()
        if not (k <= self.plan.sent or self.plan.send_z):
            return _prior_means(model, k, pm, pls)
        return self.side.code_latent(model, k, _z_mean(model, k, self.side), pm, pls, self.steps[k])

    def image(self, model, k, decode, img_prev):
        K, sent = model.cfg.scales, self.plan.sent
        if k == K > sent and not self.need_x:
            return None  # x̂ defines no table: only a caller that shows it needs it
        params, self.h = decode()
        if k > sent:
            return _point(model, k, params, self.h, img_prev, self.how)
        step = y_bin(self.level) if (k == sent and k < K) else 1
        # images[k - 1] = d(images[k]) was sent exactly (only the last image sent may be binned)
        y = img_prev if (k >= 1 and step == 1 and model.cfg.y_consistent) else None
        stage = _stages(model, k, params, self.h, img_prev) if step == 1 else None
        return self.side.image(k, params, model.img_ch[k], model.cfg.mixtures, step, y, stage)


@torch.inference_mode()
def walk(model, plan: Plan, level: int, side, how: str = "mean", need_x: bool = True) -> torch.Tensor | None:
    """Run the chain once; `side` is an _Encoder (which holds the true images) or a _Decoder.
    Returns x̂ (1,3,H,W), or None without need_x where x̂ is not sent (an encoder that only
    writes the file: the last synthesis and its filter are about half of the encoder's work).

    Every tensor that defines a coding table comes from the same calls in the same order on
    both sides; latents are rebuilt from integers so both sides feed the networks the same
    numbers.
    """
    walker = _CodingWalker(plan, level, side, how, need_x)
    imgs = chain.run(model, walker)
    if walker.upscale is not None:
        return walker.upscale
    if imgs[-1] is None:
        return None
    return finish_x(model, plan, level, how, imgs[-1], walker.h)


def finish_x(model, plan: Plan, level, how: str, x: torch.Tensor, h) -> torch.Tensor:
    """x̂ as every reader of a file of `plan` gets it from the chain's last point estimate x (h: the
    x decoder's features): the refine filter, learnt on x̂ from a coded ẑ_K (rec2, crec), then
    the model's smoothing at the level (codec/smoothing.py); a sample (`how`) as it is."""
    if how != "mean" or plan.sent >= model.cfg.scales:
        return x
    if plan.send_z:
        x = model.refine(x, h.float())
    return smoothing.smooth(model, plan, level, x)


class _LayeredLatents(Walker):
    """A layered file's latent layers: û, then every ẑ_k (if sent) under p(z_k | ŷ_{k-1}, the
    latent below) along rec2's chain of point estimates, so û and ẑ are exactly a rec2 file's.
    x̂ is computed only when no image is sent (`need_x`)."""

    def __init__(self, steps, level: int, side, how: str, send_z: bool, need_x: bool):
        self.steps, self.level, self.side, self.how = steps, level, side, how
        self.send_z, self.need_x = send_z, need_x
        self.zs, self.h = [], None

    def u(self, model):
        self.u_hat = _code_u(model, self.side, self.steps[0], self.level)
        return self.u_hat

    def z(self, model, k, prior, img_prev, prev):
        pm, pls = prior()
        z = (self.side.code_latent(model, k, _z_mean(model, k, self.side), pm, pls, self.steps[k], layer=1)
             if self.send_z else _prior_means(model, k, pm, pls))
        self.zs.append(z)
        return z

    def image(self, model, k, decode, img_prev):
        if k == model.cfg.scales and k and not self.need_x:
            return None
        params, self.h = decode()
        if k == 0:
            self.p0 = (params, self.h)
        return _point(model, k, params, self.h, img_prev, self.how)


class _KnownLatents(Walker):
    """The chain with û and every ẑ known: images[0..sent] sent exactly through `side` (or,
    without a side, given in `known`), the rest point estimates. p0: images[0]'s decoder output,
    if at hand; x_params: x's given images[K-1] = known[K-1], if at hand."""

    def __init__(self, u, zs, sent: int, how: str, side=None, known=(), p0=None, x_params=None):
        self.u_hat, self.zs, self.sent, self.how, self.side = u, zs, sent, how, side
        self.known, self.p0, self.x_params, self.h = list(known), p0, x_params, None

    def u(self, model):
        return self.u_hat

    def z(self, model, k, prior, img_prev, prev):
        return self.zs[k - 1]

    def image(self, model, k, decode, img_prev):
        if k < len(self.known):
            return self.known[k]
        K = model.cfg.scales
        if k == 0 and self.p0 is not None:
            params, self.h = self.p0
        elif k == K and k == self.sent + 1 and self.x_params is not None:
            params, self.h = self.x_params
        else:
            params, self.h = decode()
        if k > self.sent:
            return _point(model, k, params, self.h, img_prev, self.how)
        self.params = (params, self.h)
        stage = _stages(model, k, params, self.h, img_prev)
        y = img_prev if (k >= 1 and model.cfg.y_consistent) else None
        return self.side.image(k, params, model.img_ch[k], model.cfg.mixtures, 1, y, stage)

    def stop(self, model, k, imgs):
        return self.side is not None and k > self.sent


@torch.inference_mode()
def walk_layered(model, n_layers: int, level: int, side, how: str = "mean") -> torch.Tensor:
    """The chain of a layered file's first n_layers layers (layer_names), on either side:
    û; every ẑ_k under p(z_k | ŷ_{k-1}, the latent below) along rec2's chain of point estimates
    (so û and ẑ are exactly a rec2 file's, at the level's steps); then the images sent exactly,
    coarsest first, images[0] under p(images[0] | û) and images[k] under p(images[k] |
    images[k-1], ẑ_k). Returns x̂: x itself when every layer is there, else the chain's
    reconstruction from the finest image sent (or from ŷ and ẑ, or û alone)."""
    K = model.cfg.scales
    steps, send_z, sent = _layered_prefix(model, n_layers, level)
    imgs = getattr(side, "imgs", None)
    lat = _LayeredLatents(steps, level, side, how, send_z, need_x=sent < 0)
    est = chain.run(model, lat)
    if sent < 0:
        if side.choices is not None:  # a decoder's: read to the end of the layer; only image prefixes use them
            side.code_choices(K)
        return finish_x(model, Plan(sent, send_z), level, how, est[K], lat.h)
    coded = _KnownLatents(lat.u_hat, lat.zs, sent, how, side, p0=lat.p0)
    exact = chain.run(model, coded)
    # the choices end layer 0: for each image below x, whether the prefix ending there is its upscale
    if side.choices is not None and imgs is None:  # a decoder's: after û, so they can be read now
        chosen = side.code_choices(K)
        if sent < K and chosen[sent]:
            return upscale_sent(model, exact[sent], sent, side.valid)
    img = _chain_from(model, lat.u_hat, lat.zs, exact, sent, level, how)
    if side.choices is not None and imgs is not None:  # the encoder, which codes every layer, decides them
        x = _to_uint8(imgs[K])
        side.choices = [_upscale_is_closer(model, x, side.valid, exact[j], j,
                                           _to_uint8(_chain_from(model, lat.u_hat, lat.zs, exact, j, level, how,
                                                                 coded.params)))
                        for j in range(K)]
        side.code_choices(K)
    return img


def _layered_prefix(model, n_layers: int, level):
    """A layered file's first n_layers layers: (the latents' steps at the level, whether ẑ is
    among them, the finest image sent exactly; -1: none)."""
    K = model.cfg.scales
    learned = latent_steps_rd(model, level)
    steps = learned if learned else [latent_step(level)] * (K + 1)
    return steps, n_layers >= 2 and K >= 1, max(-1, n_layers - latent_layers(K) - 1)  # (û alone: -1 too)


def _chain_from(model, u, zs, exact: list, sent: int, level, how: str, x_params=None) -> torch.Tensor:
    """x̂ from images[0..sent] (`exact`) and the ẑ above them (x itself when sent is x). x_params:
    x's decoder output given images[K-1] = exact[K-1], if at hand (the lossless walk computed it
    to code x; from the integer synthesis there, where a cut file's decoder runs the float one:
    the two x̂ differ by rounding at most, which is all the encoder's choice can differ by)."""
    K = model.cfg.scales
    walker = _KnownLatents(u, zs, sent, how, known=exact[:sent + 1], x_params=x_params)
    img = chain.run(model, walker)[K]
    return finish_x(model, Plan(sent, True), level, how, img, walker.h)


def encode_tile_layered(model, tile: np.ndarray, level: int, how: str = "mean", exact: bool = False,
                        choices: bool | None = None, valid: tuple | None = None):
    """encode_tile for a layered lossless file: (streams, estimated bits, reconstruction,
    CRC of each layer's coded integers), one entry per layer_names(levels). choices: code, for
    each image below x, whether the prefix ending at it is the image's upscale (the closer to
    the tile's `valid` part than the prefix's x̂; see has_layered_choices)."""
    x = _tile_tensor(tile)
    n_layers = len(layer_names(model.cfg.scales))
    enc = _LayeredEncoder(model.images(x), latent_layers(model.cfg.scales), level)
    choices = has_layered_choices(model) if choices is None else choices
    enc.choices, enc.valid = ([] if choices else None), valid
    net, threads = _for_coding(model, enc, exact, exact_last=True)
    with threads:
        xhat = walk_layered(net, n_layers, level, enc, how)
    enc.finish()
    return enc.streams, enc.bits, _to_uint8(xhat), enc.crcs


def decode_tile_layered(model, streams: list, h: int, w: int, level: int, how: str = "mean", exact: bool = False,
                        device="cpu", choices: bool | None = None, valid: tuple | None = None):
    """The first len(streams) layers of a tile -> (reconstruction uint8, each layer's CRC).
    choices: layer 0 ends with the upscale choices (a file of format version 3; None: as
    encode_tile_layered writes them); valid: as decode_tile's."""
    r = model.ratio ** model.cfg.scales
    choices = has_layered_choices(model) if choices is None else choices
    dec = _LayeredDecoder(streams, (h // r, w // r), min(len(streams), latent_layers(model.cfg.scales)))
    dec.choices, dec.valid = ([] if choices else None), valid
    net, threads = _for_coding(model, dec, exact, len(streams) == len(layer_names(model.cfg.scales)), device)
    with threads:
        xhat = walk_layered(net, len(streams), level, dec, how)
    dec.finish()
    return _to_uint8(xhat), dec.crcs


def _for_coding(model, side, exact: bool, exact_last: bool, device="cpu"):
    """(the model the walk runs, the thread setting to run it under). On the exact path the
    probability networks are integer ones (their tables are the same on every machine, any
    thread count), and the last decoder runs in float on `device` unless x itself is coded;
    off it (files of coder version 3) every network runs in float on one CPU thread."""
    if not exact:
        if torch.device(device).type != "cpu":
            raise CodecError("this file was written before the exact probability path (coder version 3): "
                             "decode it on the CPU")
        return model, coding_threads()
    side.exact = True
    return X.ExactModel(model, exact_last, device), nullcontext()


@contextmanager
def coding_threads(n: int = 1):
    """Run torch on n threads inside the block. The float path (coder version 3) codes on one:
    oneDNN's convolutions give results that differ in the last bit between thread counts, and one
    flipped bit in an entropy parameter on a grid boundary breaks the stream, so one thread makes
    encoder and decoder agree whatever the caller's torch.set_num_threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def check_search(model, plan: Plan) -> None:
    """The latent search optimizes rec2's objective, which only a rate-distortion model has."""
    if not (plan.send_z and plan.sent < 0):
        raise CodecError("the latent search (--search) works in mode rec2 only")
    if not model.cfg.rd_lambdas:
        raise CodecError(f"the latent search (--search) needs a rate-distortion model; {model.cfg.name!r} is not one")


def encode_tile(model, tile: np.ndarray, plan: Plan, level: int, how: str = "mean", search: int = 0,
                exact: bool = False, choice: bool | None = None, valid: tuple | None = None, reconstruct: bool = True):
    """tile: uint8 (h, w, 3) with h, w multiples of model.multiple. search: steps of the
    encoder-side latent search (rec2 with a rate-distortion model; 0: the encoder's guess).
    exact: the tables from the exact probability path (exact.ExactModel). choice: code an
    upscale choice (None: where the plan has one, has_upscale_choice): the tile carries
    whichever of x̂ and the upscale is closer to the tile's `valid` (height, width) part (the
    rest is padding).
    reconstruct=False: no predicted reconstruction (None) where the file does not need it.
    Returns (streams, estimated bits per stream, predicted reconstruction uint8 (h, w, 3),
    CRC-32 of the coded integers)."""
    x = _tile_tensor(tile)
    searched = None
    if search:
        check_search(model, plan)
        searched, _ = search_latents(model, x, level, search)
    choice = has_upscale_choice(model, plan) if choice is None else choice
    enc, rec = _encode_walk(model, x, plan, level, how, searched, exact, [False] if choice else None, valid,
                            need_x=reconstruct or choice or bool(search))
    if choice and _upscale_is_closer(model, tile, valid, enc.sent, plan.sent, rec):
        enc, rec = _encode_walk(model, x, plan, level, how, searched, exact, [True], valid)
    if search:  # the search's file only where the codec's own objective says it is better
        plain, plain_rec = _encode_walk(model, x, plan, level, how, None, exact, None, valid)
        score = lambda e, r: file_score(model, level, sum(map(len, e.streams)), r, tile)  # noqa: E731
        if score(plain, plain_rec) <= score(enc, rec):
            enc, rec = plain, plain_rec
    return enc.streams, enc.bits, rec, enc.crc


def _upscale_is_closer(model, x: np.ndarray, valid, img_sent: torch.Tensor, sent: int, rec: np.ndarray) -> bool:
    """Whether the upscale of images[sent] is closer than `rec` to x's `valid` (h, w) part, in squared error."""
    h, w = valid or x.shape[:2]
    up = _to_uint8(upscale_sent(model, img_sent, sent, valid))
    return mse(up[:h, :w], x[:h, :w]) < mse(rec[:h, :w], x[:h, :w])


def _encode_walk(model, x, plan, level, how, searched, exact, choices, valid=None, need_x=True):
    """(the encoder side, x̂ uint8 or None without need_x)."""
    enc = _Encoder(model.images(x), level, searched)
    enc.choices, enc.valid = choices, valid
    net, threads = _for_coding(model, enc, exact, exact_last=plan.sent == model.cfg.scales)
    with threads:
        out = walk(net, plan, level, enc, how, need_x)
    enc.finish()
    return enc, None if out is None else _to_uint8(out)


def decode_tile(model, streams: list, h: int, w: int, plan: Plan, level: int, how: str = "mean", exact: bool = False,
                device="cpu", choice: bool | None = None, valid: tuple | None = None):
    """-> (reconstruction uint8 (h, w, 3), CRC-32 of the decoded integers). choice: the tile
    begins with an upscale choice (a file of format version 3; None: as encode_tile writes
    them); valid: the tile's (h, w) without padding, as the encoder had it."""
    r = model.ratio ** model.cfg.scales
    choice = has_upscale_choice(model, plan) if choice is None else choice
    dec = _Decoder(streams, (h // r, w // r))
    dec.choices, dec.valid = ([] if choice else None), valid
    net, threads = _for_coding(model, dec, exact, plan.sent == model.cfg.scales, device)
    with threads:
        xhat = walk(net, plan, level, dec, how)
    dec.finish()
    return _to_uint8(xhat), dec.crc


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    return x[0].permute(1, 2, 0).clamp(0, 255).round().to(torch.uint8).numpy()
