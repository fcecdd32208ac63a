"""One model file from a base model and parts trained alone on it (`--train-only`, the base
frozen): the base's weights, each part's modules from its run's EMA, and the configuration
fields each part's run set. A part whose run moved any of the base's weights is refused: the
parts must read exactly the features they were trained on."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from ..model.checkpoint import build_model, read_metadata, save_model
from ..zoo import load_any
from .loop import STORED_DTYPES, ema_model


# Settings no training run changes, only the base's file says (the decoder's smoothing table is
# tuned on a model's outputs after its training: a part trained before the table was set keeps it).
BASE_ONLY = {"smooth"}


def merge(base: Path, parts: list[tuple[Path, tuple[str, ...]]], out: Path, dtype: str = "fp16") -> dict:
    """parts: (run folder, the top-level module names it trained); returns the file's info."""
    base_model = load_any(base)
    base_state = base_model.state_dict()
    cfg, state = base_model.cfg, dict(base_state)
    info = json.loads(read_metadata(Path(base)).get("info", "{}"))  # the base's training facts, then the parts'
    info["parts"] = []
    for run, modules in parts:
        part = ema_model(Path(run))
        own = part.state_dict()
        moved = [k for k, v in base_state.items() if k in own and not torch.equal(own[k].float(), v.float())
                 and k.split(".")[0] not in modules]
        if moved:
            raise ValueError(f"{run} changed the base's weights ({moved[0]}, ...): not a part trained alone on it")
        for f in dataclasses.fields(cfg):  # the part's own settings (its --set): every field it changed
            mine, theirs = getattr(base_model.cfg, f.name), getattr(part.cfg, f.name)
            if theirs != mine and f.name not in BASE_ONLY:
                if getattr(cfg, f.name) not in (mine, theirs):
                    raise ValueError(f"parts disagree on {f.name}")
                cfg = dataclasses.replace(cfg, **{f.name: theirs})
        state.update({k: v for k, v in own.items() if k.split(".")[0] in modules})
        meta = read_metadata(Path(run) / "ckpt.safetensors")
        info["parts"].append({"run": Path(run).name, "modules": list(modules), "steps": int(meta["step"]),
                              "seconds": float(meta["seconds"])})
    model = build_model(cfg).eval()
    model.load_state_dict(state, strict=True)
    save_model(model, Path(out), STORED_DTYPES[dtype], info)
    return info

