"""A file of several tiles: coded tile by tile under priors computed over the whole image, and
reconstructed across the tiles (seamless.py).

A latent is quantized against its prior's mean (modes._Encoder.latent), so priors computed tile
by tile, blind beyond each tile, would make the latents, and with them the decoded image,
depend on the tiling. Here every prior is computed once for the whole image: û's from the whole
v̂ (whose own prior is the same everywhere), ẑ_k's in windows with context beyond each core
(seamless.windows, as the reconstruction runs). Each tile's streams code its part under its crop
of the prior, so both sides walk all tiles a latent at a time: every tile's v̂, then û's prior,
every tile's û, the images sent exactly (under each tile's own networks: their values are exact,
their tables only cost rate), ẑ_1's prior, every tile's ẑ_1, and so on. An image decodes to the
same pixels whatever its tile size. The upscale choice is one for the whole image, coded in
every tile.
"""

from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from ..errors import CodecError
from ..model import chain
from . import modes as M
from . import seamless as SL
from .layered import latent_layers, layer_names
from .seamless import crop
from .search import file_score


@dataclass
class Part:
    """One tile's coding: its side (a modes._Encoder or _Decoder, plain or layered) and its box
    in the padded image, (top, left, bottom, right) in pixels."""

    side: object
    box: tuple


def paste(parts: list, boxes: list, H: int, W: int, f: int | None = None) -> torch.Tensor:
    """One whole-image tensor from its tiles' parts (each at the variable's own scale, f pixels
    per element: by default the first box's height over its part's)."""
    f = f or (boxes[0][2] - boxes[0][0]) // parts[0].shape[-2]
    out = parts[0].new_zeros((1, parts[0].shape[1], -(-H // f), -(-W // f)))
    for t, (top, left, _, _) in zip(parts, boxes):
        out[..., top // f:top // f + t.shape[-2], left // f:left // f + t.shape[-1]] = t
    return out


def tile_multiple(model) -> int:
    """What the side of a tile of a file coded under whole-image priors is a multiple of: the
    model's multiple, times v's factor over û where v's grid must fall on the tiles' borders."""
    return max(model.multiple, _v_factor(model)) if model.has_hyper else model.multiple


def _v_factor(model) -> int:
    """Pixels per element of v (a hyperprior's: two stride-2 steps below û)."""
    return model.ratio ** model.cfg.scales * 2 ** model.u_down * 4


def _code(net, k: int, parts: list, size: tuple, mean, log_scale, step, layer: int, value):
    """Latent k (0: û) of every tile under the whole image's prior, slice by slice (a channel
    context sees the whole image's earlier slices); value: the encoder's whole latent (None on
    the decoder, which never reads it)."""
    H, W = size
    boxes = [p.box for p in parts]

    def one(part, m, ls):
        coded = [p.side.latent(lambda box=p.box: part.of(crop(value, box, H)), crop(m, p.box, H), crop(ls, p.box, H),
                               part.step(step), layer) for p in parts]
        return paste(coded, boxes, H, W)

    return chain.by_slices(net, k, mean, log_scale, one)


def _code_u(net, parts: list, size: tuple, level, step, values: dict):
    """v̂ of every tile (a hyperprior's), then û under the prior from the whole v̂."""
    H, W = size
    r = net.ratio ** net.cfg.scales
    shape = (1, net.cfg.u_ch, (H // r) >> net.u_down, (W // r) >> net.u_down)
    if net.has_hyper:
        vm, vls, fv = *net.v_code_prior(), _v_factor(net)
        v_parts = []
        for p in parts:
            t, l, b, rr = p.box
            v_shape = net.v_shape((1, net.cfg.u_ch, ((b - t) // r) >> net.u_down, ((rr - l) // r) >> net.u_down))
            v_parts.append(p.side.latent(lambda box=p.box: crop(values.get("v"), box, H, fv), vm.expand(v_shape),
                                         vls.expand(v_shape), net.v_coding_steps(level)))
        cm, cls = net.u_code_prior(paste(v_parts, [p.box for p in parts], H, W, fv), shape[-2:])
    else:
        cm, cls = net.u_code_prior()
    return _code(net, 0, parts, size, cm.expand(shape), cls.expand(shape), step, 0, values.get("u"))


class _Prior(SL._Reconstruct):
    """The chain over one window up to ẑ_k's prior, which it keeps (`prior`)."""

    def __init__(self, k, *args):
        super().__init__(*args)
        self.k, self.prior = k, None

    def z(self, model, k, prior, img_prev, prev):
        if k == self.k:
            self.prior = prior()
            return None
        return super().z(model, k, prior, img_prev, prev)

    def image(self, model, k, decode, img_prev):
        return None if k == self.k else super().image(model, k, decode, img_prev)

    def stop(self, model, k, imgs):
        return k > self.k


def z_prior(net, k: int, size: tuple, u, zs: list, imgs: list, how: str, window: int = SL.WINDOW,
            margin: int = SL.MARGIN):
    """ẑ_k's prior over the whole image, from û, the ẑ below (None: the prior's mean) and the
    images known (sent, or estimated before), in windows whose margin exceeds the networks'
    reach. -> (mean, log_scale, the point estimates of the images below k that were not known),
    the estimates stitched so that the reconstruction need not compute them again."""
    H, W = size
    out = None
    for core, read in SL.windows(H, W, window, margin, net.multiple, SL.shaped_windows(net)):
        walker = _Prior(k, crop(u, read, H), [crop(z, read, H) for z in zs], [crop(img, read, H) for img in imgs], how)
        estimates = chain.run(net, walker)[len(imgs):k]
        parts = [*walker.prior, *estimates]
        if out is None:
            out = [t.new_zeros((1, t.shape[1], H * t.shape[-2] // (read[2] - read[0]),
                                W * t.shape[-1] // (read[3] - read[1]))) for t in parts]
        for whole, part in zip(out, parts):
            f = (read[2] - read[0]) // part.shape[-2]  # pixels per element
            t, l, h, w = (core[0] - read[0]) // f, (core[1] - read[1]) // f, (core[2] - core[0]) // f, (core[3] - core[1]) // f
            whole[..., core[0] // f:core[0] // f + h, core[1] // f:core[1] // f + w] = part[..., t:t + h, l:l + w]
    return out[0], out[1], out[2:]


def _image(net, k: int, p: Part, size: tuple, u, zs: list, imgs: list, level, sent: int, how: str):
    """images[k] of one tile, sent exactly (binned, if it is a lossy file's last image sent),
    under the tile's own networks: (1, C, h, w)."""
    H = size[0]
    walker = M._CodingWalker(M.Plan(sent, False), level, p.side, how)
    img_prev = crop(imgs[k - 1], p.box, H) if k else None
    decode = (partial(net.p_img0, crop(u, p.box, H), features=True) if k == 0 else
              partial(net.p_img, k, crop(zs[k - 1], p.box, H), img_prev, features=True))
    return walker.image(net, k, decode, img_prev)


def chosen(parts: list) -> bool:
    """The upscale choice every tile carries (first in its stream); tiles that disagree are corrupt."""
    flags = {p.side.code_choices(1)[0] for p in parts if p.side.choices is not None}
    if len(flags) > 1:
        raise CodecError("corrupt stream: the tiles disagree on the upscale choice, which is one per image")
    return flags == {True}


@torch.inference_mode()
def walk(net, parts: list, size: tuple, level, steps: list, sent: int, send_z: bool, values: dict | None = None,
         how: str = "mean", stop: int | None = None, z_layer: int = 0) -> SL.Coded:
    """Code (an encoder's sides) or decode (a decoder's) every tile's latents and the images the
    chain sends within them (images[0..sent]); steps: the quantization steps of û and each ẑ_k;
    send_z: every ẑ above the images sent is coded too (else its prior's mean stands in); stop:
    the chain ends before ẑ_stop (a chosen upscale); values: the encoder's whole latents ("v",
    "u", "z1", ...). -> the whole image's coded variables (seamless.Coded, without grid and
    choice; its images: those sent, then the point estimates above them that the priors needed)."""
    values = values or {}
    H, W = size
    boxes = [p.box for p in parts]
    u = _code_u(net, parts, size, level, steps[0], values)
    zs, imgs = [], []  # imgs: the images sent, then the point estimates the priors computed
    for k in range(net.cfg.scales + 1):
        if k and stop is not None and k >= stop:
            break
        if k:
            if k <= sent or send_z:
                pm, pls, estimates = z_prior(net, k, size, u, zs, imgs, how)
                imgs += estimates
                zs.append(_code(net, k, parts, size, pm, pls, steps[k], z_layer, values.get(f"z{k}")))
            else:
                zs.append(None)
        if k <= sent:
            imgs.append(paste([_image(net, k, p, size, u, zs, imgs, level, sent, how) for p in parts], boxes, H, W))
    zs += [None] * (net.cfg.scales - len(zs))
    return SL.Coded(tuple(size), level, u, zs, imgs, None)


def whole_values(model, padded, grid: list, plan, searched=None) -> dict:
    """The encoder's whole latents ("v", "u", "z1", ...): seamless.analyse's over the windows of
    the reconstruction (or the latent search's, tile by tile) pasted together, and v from the
    whole u (a part's v would see only its u)."""
    H, W = padded.shape[:2]
    if searched:  # (searched tile by tile: its latents depend on the tiling)
        per_tile, boxes = searched, _boxes(grid, model.multiple)
    else:  # analysed on the reconstruction's window grid, which depends on the image alone
        cores = [(t, l, b - t, r - l) for (t, l, b, r), _ in SL.windows(H, W, multiple=model.multiple, shaped=SL.shaped_windows(model))]
        per_tile, boxes = SL.analyse(model, padded, cores, plan), _boxes(cores, model.multiple)
    offset = 1 if model.has_hyper else 0
    out = {"u": paste([lat[offset] for lat in per_tile], boxes, H, W)}
    for k in range(1, len(per_tile[0]) - offset):
        out[f"z{k}"] = paste([lat[offset + k] for lat in per_tile], boxes, H, W)
    if model.has_hyper:
        out["v"] = (paste([lat[0] for lat in per_tile], boxes, H, W, _v_factor(model)) if searched
                    else model.q_v(out["u"]))
    return out


def _boxes(grid: list, multiple: int) -> list:
    """Each tile's box in the padded image: (top, left, bottom, right), the tile padded to `multiple`."""
    return [(t, l, t + h + (-h % multiple), l + w + (-w % multiple)) for t, l, h, w in grid]


def _tile_images(model, padded, box, keep: int) -> list:
    """The tile's images, those above images[keep] left out (images[0] stays: it gives the side its shape)."""
    t, l, b, r = box
    imgs = model.images(M._tile_tensor(padded[t:b, l:r]))
    return [img if k <= max(keep, 0) else None for k, img in enumerate(imgs)]


def _placed(coded, grid: list, chose: bool):
    """coded with the tiles' grid and the upscale choice they carry."""
    coded.grid, coded.chosen = list(grid), np.full(len(grid), chose)
    return coded


def encode_tiles(model, padded: np.ndarray, grid: list, plan, level, exact: bool, choice: bool, valid: tuple,
                 searched=None, how: str = "mean", reconstruct: bool = True):
    """Code each tile of an image (`padded`: uint8 (H, W, 3), padded to the model's multiple; grid:
    the tiles' unpadded (top, left, h, w)) and reconstruct x̂ across them. choice: the file
    carries the upscale choice, set where the upscale of the image sent is closer to the image
    than x̂ (valid: its unpadded (h, w)). searched: per tile, the latent search's latents, whose
    file is kept only where it scores better than the plain encoder's (as modes.encode_tile).
    -> (the tiles' finished encoder sides (streams, bits, crc), x̂ uint8 (H, W, 3); None without
    reconstruct where neither the choice nor the search needs it)."""
    if searched is not None:
        found = encode_tiles(model, padded, grid, plan, level, exact, choice, valid, None, how)
        sides, recon = encode_tiles(model, padded, grid, plan, level, exact, choice, valid, searched, how)
        image = padded[:valid[0], :valid[1]]
        score = lambda s, x: file_score(model, level, sum(len(b) for e in s for b in e.streams), x, image)  # noqa: E731
        return found if score(*found) <= score(sides, recon) else (sides, recon)
    values = whole_values(model, padded, grid, plan, searched)
    net, threads = SL.coding_net(model, exact)
    boxes, steps = _boxes(grid, model.multiple), M.plain_steps(net, plan, level)  # (net's: the exact path's steps)

    def code(chose: bool):
        parts = []
        for box in boxes:
            side = M._Encoder(_tile_images(model, padded, box, plan.sent), level)
            side.exact, side.choices = exact, ([chose] if choice else None)
            parts.append(Part(side, box))
        stop = plan.sent + 1 if chosen(parts) else None
        coded = walk(net, parts, padded.shape[:2], level, steps, plan.sent, plan.send_z, values, how, stop)
        for p in parts:
            p.side.finish()
            p.side.imgs = p.side.latents = p.side.sent = None  # kept until the file is written: only the streams
        return [p.side for p in parts], _placed(coded, grid, chose)

    with threads:
        sides, coded = code(False)
        if not (reconstruct or choice):
            return sides, None
        recon = SL.reconstruct(net, coded, plan, how, valid)
        if choice and SL.upscale_is_closer(net, coded, plan.sent, valid, recon, padded):
            sides, coded = code(True)
            recon = SL.reconstruct(net, coded, plan, how, valid)
    return sides, recon


def decode_coded(net, tiles: list, grid: list, size: tuple, plan, level, exact: bool, choice: bool,
                 how: str = "mean"):
    """A plain file's coded variables from its tiles' streams (size: the padded (H, W)); net: the
    model as the codec runs it (seamless.coding_net). -> (seamless.Coded, each tile's CRC of
    the integers it decoded)."""
    r = net.ratio ** net.cfg.scales
    parts = []
    for (t, l, b, rr), streams in zip(_boxes(grid, net.multiple), tiles):
        side = M._Decoder(streams, ((b - t) // r, (rr - l) // r))
        side.exact, side.choices = exact, ([] if choice else None)
        parts.append(Part(side, (t, l, b, rr)))
    chose = chosen(parts)
    coded = walk(net, parts, size, level, M.plain_steps(net, plan, level), plan.sent, plan.send_z, how=how,
                 stop=plan.sent + 1 if chose else None)
    for p in parts:
        p.side.finish()
    return _placed(coded, grid, chose), [p.side.crc for p in parts]


def _images_below_x(net, parts: list, coded, size: tuple, sent: int, how: str, images=None, whole=True) -> list:
    """images[0..sent] of every tile, sent exactly, under the tile's networks given the whole
    image's û and ẑ; the tile's x itself (uint8) where sent is x; images(box): an encoder's
    tile images, made one tile at a time. -> (the whole images below x, if `whole`; xs)."""
    H, W = size
    K, boxes = net.cfg.scales, [p.box for p in parts]
    below, xs = [], []
    for p in parts:
        if images is not None:
            p.side.imgs = images(p.box)
        walker = M._KnownLatents(crop(coded.u, p.box, H), [crop(z, p.box, H) for z in coded.zs], sent, how, p.side)
        imgs = chain.run(net, walker)[:sent + 1]
        if sent == K:
            xs.append(M._to_uint8(imgs.pop()))
        below.append(imgs)
        p.side.imgs = p.side.sent = None
    return [paste([b[k] for b in below], boxes, H, W) for k in range(len(below[0]))] if whole else [], xs


def encode_tiles_layered(model, padded: np.ndarray, grid: list, level, exact: bool, choices: bool, valid: tuple,
                         how: str = "mean"):
    """A layered (lossless) file's tiles: the latent layers under whole-image priors, then each
    tile's images; with `choices`, for every image below x, whether the prefix ending there is
    the image's upscale (closer to the image than the prefix's x̂ across the tiles).
    -> (the tiles' finished encoder sides, each tile's x as coded: uint8, padded)."""
    K, H, W = model.cfg.scales, *padded.shape[:2]
    values = whole_values(model, padded, grid, M.Plan(-1, True))
    net, threads = SL.coding_net(model, exact, x_coded=True)
    steps, _, _ = M._layered_prefix(net, len(layer_names(K)), level)
    parts = []
    for box in _boxes(grid, model.multiple):
        side = M._LayeredEncoder(_tile_images(model, padded, box, 0), latent_layers(K), level)
        side.exact, side.choices = exact, None
        parts.append(Part(side, box))
    with threads:
        coded = walk(net, parts, (H, W), level, steps, -1, K >= 1, values, how, z_layer=1)
        below, xs = _images_below_x(net, parts, coded, (H, W), K, how, lambda box: _tile_images(model, padded, box, K))
    if choices:
        rec_net, threads = SL.coding_net(model, exact)
        closer = []
        with threads:
            for j in range(K):  # the prefix that ends at images[j]: x̂ from it and every ẑ, or its upscale
                prefix = SL.Coded((H, W), level, coded.u, coded.zs, below[:j + 1], np.zeros(len(grid), bool),
                                  list(grid))
                recon = SL.reconstruct(rec_net, prefix, M.Plan(j, True), how, valid)
                closer.append(SL.upscale_is_closer(rec_net, prefix, j, valid, recon, padded))
        for p in parts:
            p.side.choices = closer
            p.side.code_choices(K)
    for p in parts:
        p.side.finish()
    return [p.side for p in parts], xs


def decode_layered_coded(model, tiles: list, grid: list, size: tuple, n_layers: int, level, exact: bool,
                         choices: bool, device="cpu", how: str = "mean"):
    """A layered file's first n_layers layers (tiles: each tile's streams, layer by layer) ->
    (x uint8 (H, W, 3) when every layer is there, else the prefix's seamless.Coded for
    reconstruct_prefix; each tile's per-layer CRCs of the integers it decoded)."""
    K, (H, W) = model.cfg.scales, size
    full = n_layers == len(layer_names(K))
    net, threads = SL.coding_net(model, exact, device, x_coded=full)
    steps, send_z, sent = M._layered_prefix(net, n_layers, level)
    r = model.ratio ** K
    parts = []
    for (t, l, b, rr), streams in zip(_boxes(grid, model.multiple), tiles):
        side = M._LayeredDecoder(streams, ((b - t) // r, (rr - l) // r), min(len(streams), latent_layers(K)))
        side.exact, side.choices = exact, ([] if choices else None)
        parts.append(Part(side, (t, l, b, rr)))
    with threads:
        coded = walk(net, parts, size, level, steps, -1, send_z, how=how, z_layer=1)
        below, xs = _images_below_x(net, parts, coded, size, sent, how, whole=not full) if sent >= 0 else ([], [])
        read = {tuple(p.side.code_choices(K)) for p in parts if p.side.choices is not None}
        if len(read) > 1:
            raise CodecError("corrupt stream: the tiles disagree on the upscale choices, which are one per image")
        for p in parts:
            p.side.finish()
    crcs, boxes = [p.side.crcs for p in parts], [p.box for p in parts]
    del parts
    if full:
        out = np.empty((H, W, 3), np.uint8)
        for (t, l, b, rr), x in zip(boxes, xs):
            out[t:b, l:rr] = x
        return out, crcs
    chose = bool(read) and 0 <= sent < K and read.pop()[sent]
    known = below if sent >= 0 else coded.imgs  # (the latent walk's estimates are rec2's chain's)
    return SL.Coded(tuple(size), level, coded.u, coded.zs, known, np.full(len(grid), chose), list(grid)), crcs


def reconstruct_prefix(model, prefix, n_layers: int, exact: bool, valid: tuple, device="cpu", how: str = "mean"):
    """x̂ uint8 (H, W, 3) of a layered file's prefix of n_layers layers, across its tiles."""
    _, send_z, sent = M._layered_prefix(model, n_layers, prefix.level)
    net, threads = SL.coding_net(model, exact, device)
    with threads:
        return SL.reconstruct(net, prefix, M.Plan(sent, send_z), how, valid)
