"""Shared fixtures: tiny random-init models saved to .safetensors files, and small images.

The models are far too small to compress well, but they exercise every network call and
every coding path of the real codec in milliseconds. Nothing here reads /work/shared or
the shipped model files.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from selfcodec.model.checkpoint import save_model
from selfcodec.model.registry import build_model, make_config
from selfcodec.nn.blocks import data_dependent_init

# The tiny random models' lossless files are larger than the PNG of their pixels, which the encoder
# would write instead (codec/stored.py): tests of the model's coding keep the model's file, also in
# the command lines they start. tests/test_stored.py and the golden test run with the fallback.
os.environ["SELFCODEC_NO_STORED"] = "1"


@pytest.fixture()
def stored_fallback(monkeypatch):
    """The encoder as users run it: a lossless file of stored pixels where that is smaller."""
    monkeypatch.delenv("SELFCODEC_NO_STORED")


ASSET = Path(__file__).resolve().parents[1] / "selfcodec" / "assets" / "kodim23-crop.png"

TINY = dict(ch=16, growth=8, block_convs=1, mixtures=3, z_ch=8, u_ch=4, flow_hidden=8, flow_blocks=1)
TINY_FAST = dict(network="fast", ch=16, mid_ch=8, head_ch=8, mixtures=2, z_ch=8, u_ch=4, flow_hidden=8, flow_blocks=1)


def build_tiny(path: Path, preset: str = "selfvae-downscale", seed: int = 0, **overrides) -> Path:
    """A tiny random-init model with data-dependent init, saved to `path` (deterministic per seed)."""
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        tiny = TINY_FAST if overrides.get("network") == "fast" else TINY
        cfg = make_config(preset, **{**tiny, **overrides})
        model = build_model(cfg)
        side = 2 * model.multiple
        x = torch.randint(0, 256, (2, 3, side, side)).float()
        data_dependent_init(model, x)
        if model.has_hyper:  # its last layer starts at zero (no offsets): give the test some
            torch.nn.init.normal_(model.hyper_s.body[-1].weight, std=0.1)
            torch.nn.init.normal_(model.hyper_s.body[-1].bias, std=0.3)
        for k in range(model.cfg.scales + 1):  # channel contexts start adding nothing too
            for net in getattr(model.latent_context(k), "nets", ()):
                torch.nn.init.normal_(net[-1].weight, std=0.1)
                torch.nn.init.normal_(net[-1].bias, std=0.3)
        if model.cfg.network == "fast":  # and so do the fast family's pixel contexts
            for ctx in [*getattr(model, "context", ()), getattr(model, "context0", None)]:
                for net in getattr(ctx, "nets", ()):
                    torch.nn.init.normal_(net[-1].weight, std=0.1)
                    torch.nn.init.normal_(net[-1].bias, std=0.1)
                for skip in getattr(ctx, "skips", None) or ():
                    torch.nn.init.normal_(skip.weight, std=0.02)
            if model.cfg.refine:
                torch.nn.init.normal_(model.refine_net[-1].weight, std=0.05)
            if model.cfg.refine_half:
                torch.nn.init.normal_(model.refine_half_net[-1].weight, std=0.05)
        save_model(model.eval(), path)
    finally:
        torch.random.set_rng_state(state)
    return path


def without_part(path: str, out: Path, prefix: str, **off) -> str:
    """The model at `path` with the modules whose names start with `prefix` taken out (the
    config fields `off` say it has none), its other weights as they are; saved to `out`."""
    from selfcodec.model.checkpoint import load_model

    m = load_model(path)
    plain = build_model(type(m.cfg)(**{**vars(m.cfg), **off})).eval()
    plain.load_state_dict({k: v for k, v in m.state_dict().items() if not k.startswith(prefix)})
    save_model(plain, out)
    return str(out)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def tiny_model(model_dir) -> str:
    """selfvae-downscale (K=1), seed 0."""
    return str(build_tiny(model_dir / "tiny-ds.safetensors", "selfvae-downscale", seed=0))


@pytest.fixture(scope="session")
def tiny_model_other(model_dir) -> str:
    """Same architecture as tiny_model, other seed: other weights, other hash."""
    return str(build_tiny(model_dir / "tiny-ds-other.safetensors", "selfvae-downscale", seed=1))


@pytest.fixture(scope="session")
def tiny_model_3l(model_dir) -> str:
    """selfvae-downscale-3l (K=2)."""
    return str(build_tiny(model_dir / "tiny-ds3l.safetensors", "selfvae-downscale-3l", seed=2))


@pytest.fixture(scope="session")
def tiny_models_y_consistent(model_dir) -> dict:
    """tiny_model's and tiny_model_3l's weights with y_consistent (x coded given y = d(x))."""
    return {"downscale": str(build_tiny(model_dir / "tiny-ds-yc.safetensors", "selfvae-downscale", seed=0,
                                        y_consistent=True)),
            "downscale-3l": str(build_tiny(model_dir / "tiny-ds3l-yc.safetensors", "selfvae-downscale-3l",
                                           seed=2, y_consistent=True))}


@pytest.fixture(scope="session")
def tiny_models_staged(model_dir) -> dict:
    """Models coded in three stages per 2x2 block: downscale models with x_context, one of them
    y-consistent too, one with y_context (its coarsest image staged as well), and a VAE with
    y_context (x itself staged)."""
    return {"downscale": str(build_tiny(model_dir / "tiny-ds-ctx.safetensors", "selfvae-downscale", seed=5,
                                        x_context=1, y_context=1)),
            "downscale-3l": str(build_tiny(model_dir / "tiny-ds3l-ctx-yc.safetensors", "selfvae-downscale-3l",
                                           seed=6, x_context=1, y_consistent=True)),
            "vae": str(build_tiny(model_dir / "tiny-vae-ctx.safetensors", "vae", seed=7, y_context=1))}


@pytest.fixture(scope="session")
def tiny_fast_models(model_dir) -> dict:
    """Every preset built with the fast networks, as rate-distortion models of 3 levels."""
    lam = (0.005, 0.01, 0.02)
    return {p: str(build_tiny(model_dir / f"tiny-fast-{p}.safetensors", p, seed=8, network="fast", rd_lambdas=lam))
            for p in ("selfvae-downscale", "selfvae-downscale-3l", "selfvae-sketch", "vae")}


@pytest.fixture(scope="session")
def tiny_fast_hyper(model_dir) -> str:
    """The fast downscale model with a hyperprior for û and means offset from a bicubic upscale."""
    return str(build_tiny(model_dir / "tiny-fast-hyper.safetensors", "selfvae-downscale", seed=9, network="fast",
                          rd_lambdas=(0.005, 0.01, 0.02), u_hyper=4, up_base="bicubic"))


@pytest.fixture(scope="session")
def tiny_fast_context(model_dir) -> str:
    """tiny_fast_hyper with channel contexts (û in 2 slices, ẑ in 3) and 3x3 decoder heads."""
    return str(build_tiny(model_dir / "tiny-fast-context.safetensors", "selfvae-downscale", seed=9, network="fast",
                          rd_lambdas=(0.005, 0.01, 0.02), u_hyper=4, up_base="bicubic", u_slices=2, z_slices=3,
                          slice_ch=8, head_k=3))


@pytest.fixture(scope="session")
def tiny_vae(model_dir) -> str:
    """Plain VAE (K=0)."""
    return str(build_tiny(model_dir / "tiny-vae.safetensors", "vae", seed=3))


@pytest.fixture(scope="session")
def tiny_sketch(model_dir) -> str:
    """selfvae-sketch (K=1, one-channel sketch)."""
    return str(build_tiny(model_dir / "tiny-sketch.safetensors", "selfvae-sketch", seed=4))


@pytest.fixture(scope="session")
def all_tiny_models(tiny_model, tiny_model_3l, tiny_vae, tiny_sketch) -> dict:
    return {"downscale": tiny_model, "downscale-3l": tiny_model_3l, "vae": tiny_vae, "sketch": tiny_sketch}


def natural_crop(h: int = 48, w: int = 64, top: int = 160, left: int = 200) -> np.ndarray:
    with Image.open(ASSET) as im:
        a = np.asarray(im.convert("RGB"))
    return np.ascontiguousarray(a[top:top + h, left:left + w])


@pytest.fixture(scope="session")
def natural() -> np.ndarray:
    """A 64x48 (w x h) crop of the bundled Kodak sample, uint8 (48, 64, 3). Do not modify."""
    a = natural_crop()
    a.setflags(write=False)
    return a


@pytest.fixture()
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="module")
def pillow_plugin():
    """selfcodec.pillow registered for a module's tests, then taken out of Pillow's tables, so
    that other test modules see Pillow as it was."""
    import selfcodec.pillow as plug

    plug.register()
    yield plug
    plug.register(model=None)
    for table in (Image.OPEN, Image.SAVE, Image.MIME, Image.DECODERS):
        table.pop(plug.FORMAT, None)
    if plug.FORMAT in Image.ID:
        Image.ID.remove(plug.FORMAT)
    Image.EXTENSION.pop(plug.EXTENSION, None)


# The codec's tests run tiny models on tiny images: thread start-up and contention with other
# work on the machine cost far more than they win. Tests that check thread counts set their own.
torch.set_num_threads(1)
