"""A whole .svae file, tile by tile: an image is coded in tiles (each padded to the model's
multiple, coded on its own, then cropped back), so the networks' memory is bounded by the tile
size whatever the image size; the header, the tiles' streams and their checks are put together
and taken apart here. selfcodec.api is the front end."""

import os
import time
import zlib

import numpy as np
import torch

from .. import zoo
from ..errors import ChecksumError, CodecError, FormatError, ModelMismatchError
from ..imageio import ImageMeta
from ..limits import PILLOW_LIMIT, check_pixels
from ..model import exact as X
from . import container as C
from . import layered as LY
from ..entropy.coder import min_stream_bytes
from ..entropy.dmol import DMoL
from . import modes as M
from . import plans as P
from . import seamless as SL
from . import tiled as TL
from . import stored as ST

NO_STORED_ENV = "SELFCODEC_NO_STORED"  # "1": lossless files keep the model's coding (the tests' tiny models, whose files a PNG beats)
TILE = 1024  # pixels per tile side; peak memory grows with its square
MAX_TILE = 2048  # largest tile side the encoder writes and the decoder accepts (bounds the decoder's memory)
_COLOURS = {"L": C.COLOUR_L, "RGB": C.COLOUR_RGB, "RGBA": C.COLOUR_RGBA}


def _pad(tile: np.ndarray, multiple: int) -> np.ndarray:
    h, w = tile.shape[:2]
    ph, pw = -h % multiple, -w % multiple
    return np.pad(tile, ((0, ph), (0, pw), (0, 0)), mode="edge") if ph or pw else tile


def _crc(rgb: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(rgb, dtype=np.uint8).tobytes())


def encode_image(rgb: np.ndarray, meta: ImageMeta, mode: str, level, model, tile: int, search: int,
                 layered: bool, strip: bool, metadata: dict | None, stored_fallback: bool = True,
                 reconstruct: bool = True) -> dict:
    """An image (uint8 H x W x 3 and its ImageMeta) -> encode_report's dict (see selfcodec.api);
    level: an int, or a Fraction between two levels (plans.as_level). reconstruct=False: the
    report's "recon" is None where the file could be written without it (rec1, rec2)."""
    net, digest, name = zoo.load(model if model is not None else zoo.default_for(mode))
    plan = M.plan_for(mode, net.cfg.scales)
    h, w = rgb.shape[:2]
    shared_priors = layered or plan.sent < net.cfg.scales  # several tiles of it share whole-image priors
    tile_side = max(net.multiple, tile - tile % net.multiple)
    if tile_side < max(h, w) and shared_priors:  # (their borders on v's grid too)
        m = TL.tile_multiple(net)
        tile_side = max(m, tile_side - tile_side % m)
    grid = C.tile_grid(h, w, tile_side, tile_side)
    t0 = time.perf_counter()
    fallback = mode == "lossless" and stored_fallback and os.environ.get(NO_STORED_ENV) != "1"  # where PNG or raw is smaller
    png = ST.png_later(rgb, meta.colour == "L") if fallback else None
    recon = np.empty_like(rgb)
    names = LY.layer_names(net.cfg.scales) if layered else M.stream_names(plan, net.cfg.scales)
    exact = X.supports(net)  # tables every machine rebuilds exactly
    reconstruct = reconstruct or not exact or layered  # (the pixels' CRC, or the lossless check, reads x̂)
    choice = M.has_layered_choices(net) if layered else M.has_upscale_choice(net, plan)  # upscale choices coded
    tiles, est, crcs = [], np.zeros(len(names)), []
    seamless = len(grid) > 1 and shared_priors
    if seamless and layered:  # every layer coded tile by tile; the prefixes' x̂ across the tiles
        sides, xs = TL.encode_tiles_layered(net, _pad(rgb, net.multiple), grid, level, exact, choice, (h, w))
        tiles, crcs, est = [e.streams for e in sides], [e.crcs for e in sides], np.sum([e.bits for e in sides], axis=0)
        for (top, left, th, tw), x in zip(grid, xs):
            recon[top:top + th, left:left + tw] = x[:th, :tw]
        del sides, xs
    elif seamless:  # coded tile by tile, reconstructed across the tiles
        searched = [_searched(net, _pad(rgb[t:t + th, l:l + tw], net.multiple), plan, level, search)
                    for t, l, th, tw in grid] if search else None
        sides, full = TL.encode_tiles(net, _pad(rgb, net.multiple), grid, plan, level, exact, choice, (h, w), searched,
                                      reconstruct=reconstruct)
        tiles, crcs = [e.streams for e in sides], [[e.crc] for e in sides]
        recon = None if full is None else full[:h, :w]
        est = np.sum([e.bits for e in sides], axis=0)
    for top, left, th, tw in ([] if seamless else grid):
        padded = _pad(rgb[top:top + th, left:left + tw], net.multiple)
        if layered:
            streams, bits, rec, tile_crcs = M.encode_tile_layered(net, padded, level, exact=exact, choices=choice,
                                                                  valid=(th, tw))
        else:
            streams, bits, rec, tile_crc = M.encode_tile(net, padded, plan, level, search=search, exact=exact,
                                                         choice=choice, valid=(th, tw), reconstruct=reconstruct)
            tile_crcs = [tile_crc]
            if rec is None:
                recon = None
        crcs.append(tile_crcs)
        tiles.append(streams)
        est += bits
        if recon is not None:
            recon[top:top + th, left:left + tw] = rec[:th, :tw]
    if mode == "lossless" and not np.array_equal(recon, rgb):
        raise ChecksumError("internal error: the lossless chain did not reproduce the input")
    alpha = zlib.compress(np.ascontiguousarray(meta.alpha).tobytes(), 9) if meta.alpha is not None else None
    header = C.Header(model_name=name, model_hash=digest, mode=M.MODE_CODES[mode], level=int(level), height=h, width=w,
                      colour=_COLOURS[meta.colour], pad_h=-h % net.multiple, pad_w=-w % net.multiple,
                      tile_h=tile_side if tile_side < h else 0, tile_w=tile_side if tile_side < w else 0,
                      n_streams=len(est), pixel_crc=_check_crc(exact and not layered, mode, recon, crcs),
                      coder_version=C.CODER_VERSION if exact else C.FLOAT_CODER_VERSION,
                      layer_crcs=tuple(M.combine_crcs(crcs)) if layered else (),
                      upscale_choice=choice, metadata={} if strip else _kept(meta.metadata, metadata),
                      level_frac=M.level_parts(level)[1], seamless=seamless,
                      tile_crcs=_tile_crcs(crcs) if seamless else ())
    data = C.pack(header, tiles, alpha)
    real = [sum(len(t[i]) for t in tiles) for i in range(len(names))]
    streams = {n: {"bytes": r, "estimated_bits": float(b)} for n, r, b in zip(names, real, est)}
    if fallback:
        pixels = ST.pack(rgb, meta.colour == "L", model_bytes=sum(real), png=png)
        if pixels is not None:
            header = C.Header(model_name=name, model_hash=digest, mode=P.STORED, level=int(level), height=h, width=w,
                              colour=header.colour, pad_h=0, pad_w=0, tile_h=0, tile_w=0, n_streams=1,
                              pixel_crc=_crc(rgb), metadata=header.metadata)
            data, streams = C.pack(header, [[pixels]], alpha), {"pixels": {"bytes": len(pixels), "estimated_bits": 8.0 * len(pixels)}}
    return {"data": data, "recon": recon, "meta": meta, "seconds": time.perf_counter() - t0, "streams": streams}


def _tile_crcs(crcs: list) -> tuple:
    """A seamless header's tile CRCs from each tile's per-layer CRCs (one layer in a plain file): layer by layer."""
    return tuple(tile[i] for i in range(len(crcs[0])) for tile in crcs)


def _check_tiles_crcs(header: C.Header, grid: list, got: list) -> list:
    """ChecksumError naming the tiles of a seamless file that decoded to other integers than were
    coded (got: each tile's per-layer CRCs), layer by layer, before the image is reconstructed;
    -> got. (The priors span the tiles, so damage in one tile's latents may show in its
    neighbours' too: the lowest layer that differs is named, with every tile it differs in.)"""
    for i in range(len(got[0]) if got else 0):
        bad = [(top, left) for t, ((top, left, _, _), layer_crcs) in enumerate(zip(grid, got))
               if layer_crcs[i] != header.tile_crcs[i * header.n_tiles + t]]
        if bad:
            where = ("the tile at " if len(bad) == 1 else "the tiles at ") + ", ".join(map(str, bad))
            raise ChecksumError(f"{where} decoded to other integers than the encoder coded (tile CRC mismatch"
                                f"{f' in layer {i}' if header.layered else ''}): the file is damaged, or the model's "
                                "weights differ from the encoder's")
    return got


def _searched(net, tile: np.ndarray, plan, level, steps: int) -> list:
    """The latent search's latents for a tile (rec2 of a rate-distortion model)."""
    M.check_search(net, plan)
    return M.search_latents(net, M._tile_tensor(tile), level, steps)[0]


def _kept(source: dict, replaced: dict | None) -> dict:
    return {kind: value for kind, value in {**source, **(replaced or {})}.items() if value}


def _check_crc(coded: bool, mode: str, rgb: np.ndarray, tile_crcs: list) -> int:
    """The header's check value: for a lossy file of the exact path (coder version 4) a CRC of the
    coded integers, since its pixels may differ by rounding between machines; else the pixels'."""
    return M.combine_crcs(tile_crcs)[0] if coded and mode != "lossless" else _crc(rgb)


def _resolve_for(header: C.Header, model):
    if model is None and _shipped(header.model_name):
        model = header.model_name  # else the default model, whose hash is then checked
    net, digest, _ = zoo.load(model)
    if digest != header.model_hash and (model == header.model_name or model is None):
        # a shipped model renamed, or a shipped name whose weights have since changed: the
        # file's weights may be shipped under another name
        earlier = zoo.find_by_hash(header.model_hash)
        if earlier is not None:
            net, digest, _ = zoo.load(earlier)
    if digest != header.model_hash:
        raise ModelMismatchError(
            f"the file was written with model {header.model_name!r} (weights {header.model_hash.hex()}), "
            f"but the weights at hand are {digest.hex()}; decode with the same model file (--model PATH)")
    return net


def _shipped(name: str) -> bool:
    return name in zoo.available()


def _device(device) -> torch.device:
    """The device the synthesis runs on, or a CodecError saying why it cannot be that one."""
    try:
        d = torch.device(device)
    except (RuntimeError, TypeError):
        raise CodecError(f"unknown device {device!r}; use cpu or cuda") from None
    if d.type not in ("cpu", "cuda"):
        raise CodecError(f"device {device!r} is not supported; use cpu or cuda")
    if d.type == "cuda" and not torch.cuda.is_available():
        raise CodecError(f"device {device!r}: no CUDA GPU is available on this machine; decode on the CPU (the default)")
    return d


def decode_rgb(data: bytes, model=None, max_pixels=PILLOW_LIMIT, partial: bool = False, device="cpu"):
    """(uint8 H x W x 3 reconstruction, ImageMeta) from .svae bytes; max_pixels, partial and
    device: see decode. ImageMeta.mode says which mode's image it is (a partial file's may be lower)."""
    data = bytes(data)
    header = C.peek_header(data)
    check_pixels(header, max_pixels)  # header only: before the payload CRC and any model
    device = _device(device)
    if header.mode == P.STORED:
        return _decode_stored(data)
    if partial or header.layered:
        return _decode_layered(data, model, partial, device)
    header, tiles, alpha = C.unpack(data, check_coder_version=False)
    C.image_mode(header.colour, alpha is not None)  # colour and alpha agree
    if header.mode not in M.MODE_NAMES:
        raise FormatError(f"unknown mode code {header.mode} in the header")
    if header.level not in M.LEVELS:
        raise FormatError(f"unknown level {header.level} in the header")
    _check_tiles(header)
    net = _resolve_for(header, model)
    _check_tile_grid(header, net)
    plan = _corrupt_if_refused(M.plan_for, M.MODE_NAMES[header.mode], net.cfg.scales)
    C.require_coder_version(header, pixel_streams=plan.sent >= 0)
    if header.n_streams != len(M.stream_names(plan, net.cfg.scales)):
        raise FormatError(f"the file holds {header.n_streams} streams per tile; mode {M.MODE_NAMES[header.mode]} needs "
                          f"{len(M.stream_names(plan, net.cfg.scales))}")
    if header.upscale_choice and not M.has_upscale_choice(net, plan):
        raise FormatError(f"corrupt header: an upscale choice in a {M.MODE_NAMES[header.mode]} file of {net.cfg.name!r}")
    h, w = header.height, header.width
    grid = C.tile_grid(h, w, header.tile_h, header.tile_w)
    _, y_step = M.LEVELS[header.level]
    steps = [y_step if (k == plan.sent and k < net.cfg.scales) else 1 for k in range(plan.sent + 1)]
    _check_sizes(net, grid, tiles, n_latent=1, image_steps=steps)
    exact = header.coder_version == C.CODER_VERSION
    if header.seamless and plan.sent >= net.cfg.scales:
        raise FormatError("corrupt header: the seamless flag on a lossless file")
    rgb, crcs = np.empty((h, w, 3), np.uint8), []
    if header.seamless:  # the tiles' latents under whole-image priors, x̂ across the tiles
        size = (h + (-h % net.multiple), w + (-w % net.multiple))
        coding, threads = SL.coding_net(net, exact, device)
        with threads:
            coded, got = _tile_step(None, TL.decode_coded, coding, tiles, grid, size, plan, header.level_value, exact,
                                    header.upscale_choice)
            crcs.extend(_check_tiles_crcs(header, grid, [[c] for c in got]))
            rgb = _allocating(SL.reconstruct, coding, coded, plan, "mean", (h, w))[:h, :w]
    for (top, left, th, tw), streams in ([] if header.seamless else zip(grid, tiles)):
        ph, pw = th + (-th % net.multiple), tw + (-tw % net.multiple)
        rec, crc = _tile_step((top, left), M.decode_tile, net, streams, ph, pw, plan, header.level_value,
                              exact=exact, device=device, choice=header.upscale_choice, valid=(th, tw))
        rgb[top:top + th, left:left + tw] = rec[:th, :tw]
        crcs.append([crc])
    if exact and plan.sent < net.cfg.scales:  # lossy: the coded integers are what every machine must agree on
        if M.combine_crcs(crcs)[0] != header.pixel_crc:
            raise ChecksumError("decoded integers differ from those the encoder coded (CRC mismatch): the file is damaged, "
                                "or the model's weights differ from the encoder's")
    elif _crc(rgb) != header.pixel_crc:
        raise ChecksumError(
            "decoded pixels differ from what the encoder predicted (pixel CRC mismatch): the file is damaged, "
            "or this machine computes the model's numbers differently from the encoder's (other torch build, CPU or GPU)")
    return rgb, _meta(header, alpha, M.MODE_NAMES[header.mode])


def _tile_step(at: tuple, step, *args, **kwargs):
    """One tile's decoding step; what the entropy decoder cannot parse is a FormatError naming the tile."""
    try:
        return _allocating(_corrupt_if_refused, step, *args, **kwargs)
    except (CodecError, MemoryError):
        raise
    except Exception as e:  # the entropy decoder met bytes it cannot parse
        where = "a tile" if at is None else f"tile at {at}"
        raise FormatError(f"corrupt stream in {where}: {type(e).__name__}: {e}") from None


def _decode_stored(data: bytes):
    """A file of stored pixels (stored.py): no model, no tiles."""
    header, tiles, alpha = C.unpack(data)
    C.image_mode(header.colour, alpha is not None)
    if header.n_tiles != 1 or header.n_streams != 1 or header.layered or header.upscale_choice:
        raise FormatError("corrupt header: a file of stored pixels has one tile of one stream")
    rgb = ST.unpack(tiles[0][0], header.height, header.width, C.COLOUR_NAMES[header.colour] == "L")
    if _crc(rgb) != header.pixel_crc:
        raise ChecksumError("decoded pixels differ from the encoded image (pixel CRC mismatch): the file is damaged")
    return rgb, _meta(header, alpha, "lossless")


def _check_sizes(net, grid, tiles, n_latent: int, image_steps: list) -> None:
    """FormatError unless each tile's image streams hold at least the bytes an honest encoder
    writes for them: what their pixels cost at the likeliest the DMoL allows. Checked from the
    stream table before any network runs, so a small file that declares a large image it sends
    (cgen, crec, lossless) cannot make the decoder work at its size. (Latents can cost next to
    nothing: a flat image's may fill no coder word at all.)"""
    for (top, left, th, tw), streams in zip(grid, tiles):
        ph, pw = th + (-th % net.multiple), tw + (-tw % net.multiple)
        for k, data in enumerate(streams[n_latent:]):
            i = n_latent + k
            need = min_stream_bytes(DMoL.min_bits(_coded_subpixels(net, k, image_steps[k], ph, pw), image_steps[k]))
            if len(data) < need:
                raise FormatError(f"truncated or corrupt file: stream {i} of the tile at ({top}, {left}) holds "
                                  f"{len(data)} bytes, and no encoder writes fewer than {need} for it")


def _coded_subpixels(net, k: int, step: int, ph: int, pw: int) -> int:
    """Subpixels of images[k] of a ph x pw tile that its stream codes over the DMoL's full range."""
    r = net.ratio ** (net.cfg.scales - k)
    n = (ph // r) * (pw // r) * net.img_ch[k]
    if k >= 1 and step == 1 and net.cfg.y_consistent:
        n -= n // 4  # each block's last pixel is coded among the few values that keep y: it may cost nothing
    return n


def _corrupt_if_refused(step, *args, **kwargs):
    """step(*args, **kwargs), where a plain CodecError can only come from what the file says (a
    mode or layer count the file's model does not have, a symbol out of range): a FormatError."""
    try:
        return step(*args, **kwargs)
    except CodecError as e:
        if type(e) is not CodecError:
            raise
        raise FormatError(f"corrupt file: {e}") from None


def _meta(header: C.Header, alpha: bytes | None, mode: str) -> ImageMeta:
    alpha_plane = None
    h, w = header.height, header.width
    if alpha is not None:
        try:
            raw = zlib.decompressobj().decompress(alpha, h * w + 1)
        except zlib.error as e:
            raise FormatError(f"corrupt alpha plane: {e}") from None
        if len(raw) != h * w:
            raise FormatError("alpha plane has the wrong size")
        alpha_plane = np.frombuffer(raw, np.uint8).reshape(h, w)
    return ImageMeta(colour=C.COLOUR_NAMES[header.colour], alpha=alpha_plane, mode=mode, metadata=header.metadata)


def _check_tiles(header: C.Header) -> None:
    th, tw = min(header.tile_h or header.height, header.height), min(header.tile_w or header.width, header.width)
    if th > MAX_TILE or tw > MAX_TILE:  # a short file must not make the decoder run the model on a huge tile
        raise FormatError(f"corrupt header: tiles of {th}x{tw} pixels exceed the limit of {MAX_TILE} per side")


def _check_tile_grid(header: C.Header, net) -> None:
    """FormatError unless the tiles lie on the model's grid, as every encoder writes them (the
    reconstruction across tiles places each tile's latents at its side / the latents' scale)."""
    m = TL.tile_multiple(net) if header.seamless else net.multiple
    for side, size in ((header.tile_h, header.height), (header.tile_w, header.width)):
        if 0 < side < size and side % m:
            raise FormatError(f"corrupt header: tiles of {side} pixels; the model codes multiples of {m}")


def _allocating(step, *args, **kwargs):
    """step(*args, **kwargs), where torch's failed allocations are a MemoryError."""
    try:
        return step(*args, **kwargs)
    except RuntimeError as e:
        if "allocate" in str(e) or "out of memory" in str(e):
            raise MemoryError(f"out of memory: {e}") from None
        raise


def _decode_layered(data: bytes, model, partial: bool, device=torch.device("cpu")):
    """A layered file, or with `partial` its complete layers, decoded to the image of its last
    layer; each layer's coded integers are checked against the layer's CRC."""
    header, layers, alpha = C.unpack_layers(data, partial=partial)
    if not layers:
        raise FormatError("truncated file: it stops before the end of its first layer, so no image can be decoded")
    C.image_mode(header.colour, alpha is not None)  # colour and alpha agree
    if header.level not in M.LEVELS:
        raise FormatError(f"unknown level {header.level} in the header")
    _check_tiles(header)
    net = _resolve_for(header, model)
    _check_tile_grid(header, net)
    K = net.cfg.scales
    n = len(layers)
    mode = _corrupt_if_refused(LY.layered_mode, K, n)
    if _corrupt_if_refused(LY.layered_mode, K, header.n_streams) != M.MODE_NAMES.get(header.mode):
        raise FormatError(f"corrupt header: {header.n_streams} layers do not make a file of mode code {header.mode}")
    C.require_coder_version(header, pixel_streams=n > (2 if K else 1))
    if header.upscale_choice and not M.has_layered_choices(net):
        raise FormatError(f"corrupt header: upscale choices in a layered file of {net.cfg.name!r}")
    h, w = header.height, header.width
    grid = C.tile_grid(h, w, header.tile_h, header.tile_w)
    n_latent = LY.latent_layers(K)
    _check_sizes(net, grid, [[layer[t] for layer in layers] for t in range(len(grid))], n_latent,
                 [1] * (n - n_latent))
    exact = header.coder_version == C.CODER_VERSION
    rgb, crcs = np.empty((h, w, 3), np.uint8), []
    if header.seamless:  # the tiles' latents under whole-image priors; a prefix's x̂ across the tiles
        size = (h + (-h % net.multiple), w + (-w % net.multiple))
        rgb, got = _tile_step(None, TL.decode_layered_coded, net, [[layer[t] for layer in layers] for t in range(len(grid))],
                              grid, size, n, header.level_value, exact, header.upscale_choice, device)
        crcs.extend(_check_tiles_crcs(header, grid, got))
        if mode != "lossless":  # the prefix's coded variables: x̂ across the tiles
            rgb = _allocating(TL.reconstruct_prefix, net, rgb, n, exact, (h, w), device)
        rgb = rgb[:h, :w]
    for t, (top, left, th, tw) in ([] if header.seamless else enumerate(grid)):
        ph, pw = th + (-th % net.multiple), tw + (-tw % net.multiple)
        rec, tile_crcs = _tile_step((top, left), M.decode_tile_layered, net, [layer[t] for layer in layers], ph, pw,
                                    header.level_value, exact=exact, device=device, choices=header.upscale_choice,
                                    valid=(th, tw))
        rgb[top:top + th, left:left + tw] = rec[:th, :tw]
        crcs.append(tile_crcs)
    for name, want, got in zip(LY.layer_names(K), header.layer_crcs, M.combine_crcs(crcs)):
        if want != got:
            raise ChecksumError(f"layer {name!r} decoded to other integers than the encoder coded (layer CRC mismatch): "
                                "the file is damaged, or this machine computes the model's numbers differently")
    if mode == "lossless" and _crc(rgb) != header.pixel_crc:
        raise ChecksumError("decoded pixels differ from the encoded image (pixel CRC mismatch): the file is damaged")
    return rgb, _meta(header, alpha, mode)
