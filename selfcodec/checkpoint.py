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

from .family import ARCH_VERSION, Config, SelfVAE, build_model
from .fileio import atomic_write


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
    """The model configuration stored in a model or checkpoint file (its weights are not read)."""
    meta = read_metadata(path)
    if "config" not in meta:
        raise ValueError(f"{path} is not a selfcodec model file (no config in its metadata)")
    return Config.from_json(meta["config"])


def load_model(path: Path, prefix: str = "") -> SelfVAE:
    """Build the model described in the file's metadata and load its weights in fp32."""
    model = build_model(read_config(path))
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
