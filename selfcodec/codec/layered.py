"""Layered files: a lossless file whose prefixes are the files of the lower modes.

A layered file stores û, then every ẑ, then each image coarsest first (docs/format.md, "Layered
files"); its first n layers are a file of `layered_mode(levels, n)`. Cutting one down is a
header rewrite and a byte copy: no model and no torch.
"""

from __future__ import annotations

from . import container as C
from ..errors import CodecError, FormatError

MODE_CODES = {"rec1": 1, "rec2": 2, "crec": 4, "lossless": 5, "crec-y1": 7}  # as coding.modes.MODE_CODES


def layer_names(levels: int) -> list:
    """The layers of a layered file of a model with `levels` self-supervised images."""
    images = ["x"] if levels == 0 else (["y", "x"] if levels == 1 else [f"y{k}" for k in range(1, levels + 1)] + ["x"])
    return ["u"] + (["z"] if levels else []) + images


def latent_layers(levels: int) -> int:
    """How many of the layers hold latents: û, and every ẑ in one layer when there are any."""
    return 2 if levels else 1


def layered_mode(levels: int, n_layers: int) -> str:
    """The mode whose file the first n_layers layers make."""
    n_latent = latent_layers(levels)
    if not 1 <= n_layers <= n_latent + levels + 1:
        raise CodecError(f"a layered file of this model has 1 to {n_latent + levels + 1} layers, not {n_layers}")
    if n_layers <= n_latent:
        return "rec1" if n_layers == 1 else "rec2"
    sent = n_layers - n_latent - 1  # index of the finest image sent
    if sent == levels:
        return "lossless"
    return "crec" if sent == levels - 1 else "crec-y1"


def modes_of(levels: int) -> list:
    """The mode of each prefix of a layered file, shortest first."""
    return [layered_mode(levels, n) for n in range(1, len(layer_names(levels)) + 1)]


def layers_of(mode: str, levels: int) -> int:
    """How many layers a layered file of `mode` holds."""
    have = modes_of(levels)
    if mode not in have:
        raise CodecError(f"a layered file of this model has no {mode!r} layer; its layers give {', '.join(have)}")
    return have.index(mode) + 1


def levels_of(header: C.Header) -> int:
    """The model's number of self-supervised images, from a layered header's mode and layer count."""
    mode = {v: k for k, v in MODE_CODES.items()}.get(header.mode)
    for levels in range(0, 4):
        if mode in modes_of(levels) and layers_of(mode, levels) == header.n_streams:
            if mode in ("rec1", "rec2"):
                return -1  # the latents alone do not tell; nothing below them needs it
            return levels
    raise FormatError(f"corrupt header: {header.n_streams} layers do not make a file of mode code {header.mode}")


def truncate(data: bytes, mode: str) -> bytes:
    """Cut a layered file down to a lower mode's file by dropping its later layers. No model runs:
    the kept layers are byte for byte the file's, guarded by their own CRCs."""
    header, layers, alpha = C.unpack_layers(bytes(data))
    levels = levels_of(header)
    have = {v: k for k, v in MODE_CODES.items()}[header.mode]
    if mode not in MODE_CODES:
        raise CodecError(f"cannot cut a file to mode {mode!r}; a layered file holds {', '.join(MODE_CODES)} layers")
    if levels < 0:  # rec1 or rec2: their layers are the same whatever the model
        order = ["rec1", "rec2"]
        n = order.index(mode) + 1 if mode in order else header.n_streams + 1
    else:
        n = layers_of(mode, levels) if mode in modes_of(levels) else header.n_streams + 1
    if n > header.n_streams:
        raise CodecError(f"cannot cut a {have} file to {mode}: {mode} needs layers the file does not have "
                         f"(cut only to a lower mode)")
    if n == header.n_streams:
        return bytes(data)
    header.mode, header.n_streams = MODE_CODES[mode], n
    header.layer_crcs = header.layer_crcs[:n]
    header.tile_crcs = header.tile_crcs[:n * header.n_tiles]  # layer by layer
    header.pixel_crc = 0  # the lossy reconstruction's pixels: their layers' CRCs guard them instead
    return C.pack_layers(header, layers[:n], alpha)
