"""A model file's header, read without torch: its configuration, checked for sane sizes before
any network is built, and the shapes of the tensors it holds.

A .safetensors file starts with an 8-byte little-endian length and that many bytes of JSON: each
tensor's dtype, shape and offsets, and ``__metadata__`` (strings), where selfcodec keeps the
model's configuration as JSON under ``config`` (checkpoint.save_model). A file passed with
``--model`` is untrusted: a configuration asking for 30,000 channels or 10 million flow blocks
would have the network's constructor allocate gigabytes or run for hours, so every size is
bounded here, and checkpoint.load_model builds nothing whose weights the file does not hold.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from ..errors import CodecError

MAX_HEADER_BYTES = 100 << 20  # as safetensors itself
# (lowest, highest) of each size a configuration may ask for: several times every shipped
# model's (widths 16-128, at most 10 mixtures, 2 flow blocks, 3 levels), far below what would
# exhaust memory or time when the network is built.
SIZES = {"scales": (0, 3), "ch": (1, 1024), "growth": (1, 512), "block_convs": (1, 16), "latent_down": (1, 6),
         "u_ch": (1, 1024), "z_ch": (1, 1024), "mixtures": (1, 64), "flow_blocks": (0, 64), "flow_hidden": (1, 1024),
         "image_ch": (1, 4), "refine": (0, 16), "x_context": (0, 16), "y_context": (0, 16), "mid_ch": (1, 1024),
         "head_ch": (1, 1024), "u_hyper": (0, 1024), "u_slices": (0, 1024), "z_slices": (0, 1024),
         "slice_ch": (1, 1024), "head_k": (1, 7), "context_ch": (1, 1024), "refine_ch": (1, 1024),
         "refine_half": (0, 16), "refine_half_ch": (1, 1024), "enc_res": (0, 8)}
CHOICES = {"transform": ("downscale", "sketch", "none"), "network": ("densenet", "fast"),
           "posterior": ("uniform", "gaussian"), "up_base": ("bilinear", "bicubic")}
MAX_RD_LEVELS = 255  # one λ per quality level; the header's level is a byte
RENAMED = {"levels": "scales", "layers": "block_convs"}
"""Configuration fields under their earlier names (model files written before the rename)."""


def current_names(cfg: dict) -> dict:
    """A stored configuration with every field under its current name."""
    return {RENAMED.get(k, k): v for k, v in cfg.items()} if isinstance(cfg, dict) else cfg


def read_header(path: str | Path) -> dict:
    """The JSON header of a .safetensors file (CodecError if it is not one)."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CodecError(f"model file {path} is not a safetensors file (too short)")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER_BYTES or n > path.stat().st_size - 8:
            raise CodecError(f"model file {path} is not a safetensors file (header of {n} bytes)")
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise CodecError(f"model file {path} is not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise CodecError(f"model file {path} is not a safetensors file (its header is not a JSON object)")
    return header


def config(path: str | Path) -> dict:
    """The model configuration a model or checkpoint file stores, checked by check_config."""
    meta = read_header(path).get("__metadata__") or {}
    if "config" not in meta:
        raise CodecError(f"{path} is not a selfcodec model file (no config in its metadata)")
    try:
        cfg = current_names(json.loads(meta["config"]))
    except (TypeError, ValueError):
        raise CodecError(f"{path}: its model configuration is not JSON") from None
    check_config(cfg, path)
    return cfg


def check_config(cfg, path="the model file") -> None:
    """CodecError unless every size of the configuration is an integer within SIZES and every
    choice one CHOICES knows: the network it describes can be built in bounded time and memory."""
    if not isinstance(cfg, dict):
        raise CodecError(f"{path}: its model configuration is not a JSON object")
    for key, (lo, hi) in SIZES.items():
        value = cfg.get(key, lo)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise CodecError(f"{path}: model configuration asks for {key}={value!r}; "
                             f"this build accepts an integer from {lo} to {hi} (a damaged or forged model file?)")
    for key, allowed in CHOICES.items():
        if key in cfg and cfg[key] not in allowed:
            raise CodecError(f"{path}: model configuration has {key}={cfg[key]!r}; one of {', '.join(allowed)} expected")
    lambdas = cfg.get("rd_lambdas", [])
    if not isinstance(lambdas, list) or len(lambdas) > MAX_RD_LEVELS or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in lambdas):
        raise CodecError(f"{path}: model configuration's rd_lambdas must be a list of at most {MAX_RD_LEVELS} numbers")
    smooth = cfg.get("smooth", {})
    if not isinstance(smooth, dict) or len(smooth) > 8 or not all(
            isinstance(v, list) and len(v) <= MAX_RD_LEVELS and all(
                isinstance(s, (int, float)) and not isinstance(s, bool) and 0 <= s <= 255 for s in v)
            for v in smooth.values()):
        raise CodecError(f"{path}: model configuration's smooth must map modes to lists of at most "
                         f"{MAX_RD_LEVELS} range sigmas from 0 to 255")


def tensor_shapes(path: str | Path, prefix: str = "") -> dict:
    """{name without prefix: shape} of the tensors a .safetensors file holds under ``prefix``."""
    out = {}
    for name, entry in read_header(path).items():
        if name != "__metadata__" and name.startswith(prefix):
            shape = entry.get("shape") if isinstance(entry, dict) else None
            out[name[len(prefix):]] = tuple(shape) if isinstance(shape, list) else None
    return out
