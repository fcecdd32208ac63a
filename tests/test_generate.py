"""The generative side (selfcodec.model.generate and the sample/upscale/interpolate commands) on
tiny random-init models: shapes, dtypes, exact upscale sizes, reproducible seeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from selfcodec.model import generate as G
from selfcodec import zoo
import selfcodec.cli.main as cli_main
from selfcodec.model.checkpoint import save_model
from selfcodec.errors import CodecError
from selfcodec.model.registry import build_model, make_config
from selfcodec.nn.blocks import data_dependent_init

MODELS = ["downscale", "downscale-3l", "sketch"]
_PRESETS = {"downscale": "selfvae-downscale", "downscale-3l": "selfvae-downscale-3l",
            "sketch": "selfvae-sketch", "vae": "vae"}
_TINY = dict(ch=16, growth=8, block_convs=1, mixtures=3, z_ch=8, u_ch=4, flow_hidden=8, flow_blocks=1)


@pytest.fixture(scope="module")
def gen_models(tmp_path_factory):
    """Tiny random-init models (data-dependent init on a random batch), saved to files."""
    folder = tmp_path_factory.mktemp("gen-models")
    paths = {}
    state = torch.random.get_rng_state()
    try:
        for i, (kind, preset) in enumerate(_PRESETS.items()):
            torch.manual_seed(i)
            model = build_model(make_config(preset, **_TINY))
            side = 2 * model.multiple
            data_dependent_init(model, torch.randint(0, 256, (2, 3, side, side)).float())
            paths[kind] = str(folder / f"tiny-{kind}.safetensors")
            save_model(model.eval(), paths[kind])
    finally:
        torch.random.set_rng_state(state)
    return paths


@pytest.fixture(scope="module")
def nets(gen_models):
    return {k: zoo.load(p)[0] for k, p in gen_models.items()}


def _img(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("kind", MODELS + ["vae"])
def test_sample_shapes_and_seed(nets, kind):
    net = nets[kind]
    x, ys = G.sample(net, 3, 40, temperature=0.8, seed=5)
    assert x.shape == (3, 40, 40, 3) and x.dtype == np.uint8
    assert len(ys) == net.cfg.scales
    for k, y in enumerate(ys, start=1):
        side = 40 // net.ratio ** (net.cfg.scales - k + 1)
        assert y.shape == (3, side, side, net.img_ch[k - 1]) and y.dtype == np.uint8
    x2, ys2 = G.sample(net, 3, 40, temperature=0.8, seed=5)
    assert np.array_equal(x, x2) and all(np.array_equal(a, b) for a, b in zip(ys, ys2))
    x3, _ = G.sample(net, 3, 40, temperature=0.8, seed=6, how="sample")
    x4, _ = G.sample(net, 3, 40, temperature=0.8, seed=6, how="sample")
    assert np.array_equal(x3, x4)
    g = G.grid(x, ys)
    assert g.dtype == np.uint8 and g.ndim == 3 and g.shape[2] == 3


def test_sample_leaves_global_rng_alone(nets):
    torch.manual_seed(123)
    a = torch.rand(3)
    torch.manual_seed(123)
    G.sample(nets["downscale"], 1, 16, seed=0)
    assert torch.equal(torch.rand(3), a)


def test_sample_seeds_differ(nets):
    a, _ = G.sample(nets["downscale"], 2, 32, temperature=1.0, seed=0)
    b, _ = G.sample(nets["downscale"], 2, 32, temperature=1.0, seed=1)
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("kind,factors", [("downscale", [2]), ("downscale-3l", [2, 4])])
@pytest.mark.parametrize("hw", [(13, 17), (16, 16), (9, 40)])
def test_upscale_exact_size(nets, kind, factors, hw):
    for f in factors:
        out = G.upscale(nets[kind], _img(*hw), f)
        assert out.shape == (f * hw[0], f * hw[1], 3) and out.dtype == np.uint8


def test_upscale_refuses(nets):
    with pytest.raises(CodecError):
        G.upscale(nets["downscale"], _img(8, 8), 4)
    with pytest.raises(CodecError):
        G.upscale(nets["sketch"], _img(8, 8), 2)
    with pytest.raises(CodecError):
        G.upscale(nets["vae"], _img(8, 8), 2)


def test_upscale_benchmark(nets):
    res = G.upscale_benchmark(nets["downscale"], [_img(33, 20), _img(16, 24, 1)])
    assert res["images"] == 2 and len(res["per_image"]) == 2
    assert res["per_image"][0]["height"] == 32 and res["per_image"][0]["width"] == 20
    for r in res["per_image"]:
        assert 0 < r["psnr_selfcodec"] <= 100 and 0 < r["psnr_bicubic"] <= 100
    res4 = G.upscale_benchmark(nets["downscale-3l"], [_img(32, 24)], factor=4)
    assert res4["factor"] == 4 and res4["per_image"][0]["height"] == 32


@pytest.mark.parametrize("kind", MODELS + ["vae"])
def test_interpolate_and_vary_z(nets, kind):
    net, m = nets[kind], nets[kind].multiple
    a, b = _img(50, 70), _img(45, 80, 1)
    h, w = 45 // m * m, 70 // m * m
    out = G.interpolate(net, a, b, 4)
    assert out.shape == (4, h, w, 3) and out.dtype == np.uint8
    v = G.vary_z(net, a, 3, temperature=1.0, seed=2)
    assert v.shape == (3, 50 // m * m, 70 // m * m, 3) and v.dtype == np.uint8
    assert np.array_equal(v, G.vary_z(net, a, 3, temperature=1.0, seed=2))
    if net.cfg.scales:
        assert not np.array_equal(v[0], v[1])  # the z's vary
    with pytest.raises(CodecError):
        G.interpolate(net, a, _img(m - 1, m - 1), 3)


def test_interpolate_ends_are_reconstructions(nets):
    net = nets["downscale"]
    a, b = _img(32, 32), _img(32, 32, 1)
    out = G.interpolate(net, a, b, 3)
    ra = G.interpolate(net, a, a, 2)[0]
    assert np.array_equal(out[0], ra)


# --------------------------------------------------------------------------- CLI


def _cli():
    return cli_main.main


def _png(path, h, w, seed=0):
    Image.fromarray(_img(h, w, seed)).save(path)
    return str(path)


def _size(path):
    with Image.open(path) as im:
        return im.size  # (w, h)


def test_cli_sample(tmp_path, gen_models):
    out = tmp_path / "grid.png"
    r = CliRunner().invoke(_cli(), ["sample", "--model", gen_models["downscale"], "-n", "4", "-o", str(out),
                                    "--size", "32", "--seed", "3"])
    assert r.exit_code == 0, r.output
    # 2 x 2 cells, each [y | x] of 32 px with a 1 px gap; 6 px between cells, 2 px between rows
    assert _size(out) == (2 * (32 + 1 + 32) + 6, 2 * 32 + 2)
    again = tmp_path / "grid2.png"
    r = CliRunner().invoke(_cli(), ["sample", "--model", gen_models["downscale"], "-n", "4", "-o", str(again),
                                    "--size", "32", "--seed", "3"])
    assert r.exit_code == 0 and out.read_bytes() == again.read_bytes()
    r = CliRunner().invoke(_cli(), ["sample", "--model", gen_models["sketch"], "-n", "1", "-o", str(again),
                                    "--size", "16", "--no-y", "--how", "sample", "-f"])
    assert r.exit_code == 0, r.output
    assert _size(again) == (16, 16)


def test_cli_sample_refuses_existing(tmp_path, gen_models):
    out = tmp_path / "grid.png"
    out.write_bytes(b"keep")
    r = CliRunner().invoke(_cli(), ["sample", "--model", gen_models["downscale"], "-n", "1", "-o", str(out)])
    assert r.exit_code == 2 and out.read_bytes() == b"keep"


@pytest.mark.parametrize("kind,factor", [("downscale", 2), ("downscale-3l", 2), ("downscale-3l", 4)])
def test_cli_upscale(tmp_path, gen_models, kind, factor):
    src = _png(tmp_path / "small.png", 11, 15)
    out = tmp_path / "big.png"
    r = CliRunner().invoke(_cli(), ["upscale", src, "-o", str(out), "--model", gen_models[kind],
                                    "--factor", str(factor)])
    assert r.exit_code == 0, r.output
    assert _size(out) == (15 * factor, 11 * factor)


def test_cli_upscale_4x_needs_3_levels(tmp_path, gen_models):
    src = _png(tmp_path / "small.png", 8, 8)
    r = CliRunner().invoke(_cli(), ["upscale", src, "-o", str(tmp_path / "big.png"), "--model",
                                    gen_models["downscale"], "--factor", "4"])
    assert r.exit_code == 1 and "error" in r.output
    assert not (tmp_path / "big.png").exists()


def test_cli_interpolate(tmp_path, gen_models):
    a, b = _png(tmp_path / "a.png", 40, 50), _png(tmp_path / "b.png", 36, 60, 1)
    out = tmp_path / "strip.png"
    model = gen_models["downscale"]  # multiple 16: common crop 32 x 48
    r = CliRunner().invoke(_cli(), ["interpolate", a, b, "-n", "4", "-o", str(out), "--model", model])
    assert r.exit_code == 0, r.output
    assert _size(out) == (6 * 48 + 5 * 2, 32)
    r = CliRunner().invoke(_cli(), ["interpolate", a, "--vary-z", "-n", "3", "-o", str(out), "--model", model,
                                    "-f", "--no-originals"])
    assert r.exit_code == 0, r.output
    assert _size(out) == (3 * 48 + 2 * 2, 32)
    r = CliRunner().invoke(_cli(), ["interpolate", a, "-o", str(out), "--model", model, "-f"])
    assert r.exit_code == 2
    r = CliRunner().invoke(_cli(), ["interpolate", a, b, "--vary-z", "-o", str(out), "--model", model, "-f"])
    assert r.exit_code == 2
