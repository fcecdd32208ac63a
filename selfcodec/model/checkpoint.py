"""Weights on disk: safetensors only (no pickle), the model's configuration in the metadata.

A shipped model file holds one set of weights (the EMA of training) in fp16/bf16/fp32; a
training checkpoint holds the live weights under `model.` and the EMA under `ema.`.
"""

import hashlib
import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save

from . import modelfile
from ..errors import CodecError
from .base import ARCH_VERSION, Config, SelfVAE
from .registry import build_model
from ..fileio import atomic_write


def atomic_save(tensors: dict, path: Path, metadata: dict):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata))


def save_model(model: SelfVAE, path: Path, dtype=torch.float32, info: dict | None = None):
    """Save one model's weights with its configuration (and optional training facts)."""
    sd = {k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype) for k, v in model.state_dict().items()}
    meta = {"config": model.cfg.to_json(), "format": "selfcodec-model-1"}
    if info:
        meta["info"] = json.dumps(info, sort_keys=True)
    atomic_save(sd, path, meta)


def read_metadata(path: Path) -> dict:
    with safe_open(str(path), framework="pt") as f:
        return f.metadata() or {}


def load_tensors(path: Path, prefix: str = "") -> dict:
    out = {}
    with safe_open(str(path), framework="pt") as f:
        for k in f.keys():
            if k.startswith(prefix):
                out[k[len(prefix):]] = f.get_tensor(k)
    return out


def read_config(path: Path) -> Config:
    """The model configuration stored in a model or checkpoint file (its weights are not read),
    refused (CodecError) where it asks for sizes no network of this codec has (modelfile.SIZES)."""
    return Config.from_json(json.dumps(modelfile.config(path)))


def _check_weights_fit(cfg: Config, path: Path, prefix: str) -> None:
    """CodecError unless the file holds every weight of cfg's network, in its shape: the network is
    built on the meta device (no memory), so a file cannot make us allocate more than it holds."""
    with torch.device("meta"):
        want = {k: tuple(v.shape) for k, v in build_model(cfg).state_dict().items()}
    have = modelfile.tensor_shapes(path, prefix)
    if want != have:
        wrong = sorted(k for k in want.keys() | have.keys() if want.get(k) != have.get(k))
        raise CodecError(f"{path}: its weights do not fit its configuration ({len(wrong)} tensors missing, extra "
                         f"or of another shape, e.g. {wrong[0]!r}: file {have.get(wrong[0])}, network {want.get(wrong[0])})")


def load_model(path: Path, prefix: str = "", check_fit: bool = True) -> SelfVAE:
    """Build the model described in the file's metadata and load its weights in fp32 (after
    checking the configuration's sizes and, with check_fit, that the file holds the weights it
    describes: a network built on the meta device, which costs about 2 s of torch's Python
    decompositions; the shipped files skip it, a test checks them)."""
    cfg = read_config(path)
    if check_fit:
        _check_weights_fit(cfg, path, prefix)
    model = build_model(cfg)
    sd = {k: v.float() if v.is_floating_point() else v for k, v in load_tensors(path, prefix).items()}
    model.load_state_dict(sd)
    return model.eval()


def weights_hash(path: Path) -> bytes:
    """8-byte identity of a model: the first bytes of the SHA-256 of the weights file's content
    and of the network code's version (family.ARCH_VERSION)."""
    h = hashlib.sha256(f"selfcodec-arch-{ARCH_VERSION}\n".encode())
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.digest()[:8]
