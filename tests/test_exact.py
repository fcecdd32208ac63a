"""The exact probability path (selfcodec/exact.py): a fast-family file decodes on a machine
whose convolutions compute differently, in every mode; lossless stays exact and lossy pixels
move by rounding only; the integer networks give the same tables in float32 and float64."""

from contextlib import contextmanager
from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from selfcodec.cli.main import main
from selfcodec import api
from selfcodec.model import exact as X
from selfcodec.codec import container as C
from selfcodec.codec import modes as M
from selfcodec.errors import CodecError
from selfcodec.zoo import load

FAST = ("selfvae-downscale", "selfvae-downscale-3l", "vae")


def _psnr(a, b) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse)


def _groups(args, kw) -> int:
    return kw.get("groups", args[4] if len(args) > 4 else 1)


@contextmanager
def other_convolutions():
    """A stand-in for another machine's convolutions: float32 ones computed in float64 and scaled
    by 1 + 2^-12 (as a GPU's TF32 would differ), float64 ones summed over the input channels in
    two halves (another order)."""
    real = {"conv2d": F.conv2d, "conv_transpose2d": F.conv_transpose2d}

    def make(name):
        op = real[name]

        def conv(x, w, b=None, *args, **kw):
            if x.dtype == torch.float32:
                out = op(x.double(), w.double(), None if b is None else b.double(), *args, **kw)
                return (out * (1 + 2.0 ** -12)).float()
            half = x.shape[1] // 2
            if x.dtype != torch.float64 or _groups(args, kw) != 1 or half == 0:
                return op(x, w, b, *args, **kw)
            lo = op(x[:, half:], w[half:] if name == "conv_transpose2d" else w[:, half:], None, *args, **kw)
            hi = op(x[:, :half], w[:half] if name == "conv_transpose2d" else w[:, :half], b, *args, **kw)
            return lo + hi

        return conv

    with mock.patch.object(F, "conv2d", make("conv2d")), mock.patch.object(F, "conv_transpose2d",
                                                                            make("conv_transpose2d")):
        yield


MACHINES = {"one thread": lambda: M.coding_threads(1), "two threads": lambda: M.coding_threads(2),
            "oneDNN off": lambda: torch.backends.mkldnn.flags(enabled=False), "other convolutions": other_convolutions}


@pytest.fixture(scope="module")
def models(tiny_fast_models, tiny_fast_hyper, tiny_fast_context, tiny_model, tiny_models_y_consistent,
           tiny_models_staged) -> dict:
    """The fast presets, one with a hyperprior, a DenseNet model, a y-consistent one and ones with
    context nets (staged pixels)."""
    return {**{f"fast-{p}": tiny_fast_models[p] for p in FAST}, "fast-hyper": tiny_fast_hyper,
            "fast-context": tiny_fast_context, "dense": tiny_model,
            "dense-y-consistent": tiny_models_y_consistent["downscale"],
            "dense-staged": tiny_models_staged["downscale"], "vae-staged": tiny_models_staged["vae"]}


@pytest.mark.filterwarnings("ignore:TF32 acceleration")
@pytest.mark.parametrize("name", [f"fast-{p}" for p in FAST] + ["fast-hyper", "fast-context", "dense", "dense-y-consistent",
                                                               "dense-staged", "vae-staged"])
def test_every_mode_decodes_on_every_machine_lossless_exactly_lossy_within_005_db(models, name, natural):
    path = models[name]
    img = np.ascontiguousarray(natural[:32, :48])
    levels = load(path)[0].cfg.scales
    for mode in [m for m in M.modes_for(levels) if m in api.MODES]:
        rep = api.encode_report(img, mode=mode, level=2, model=path)
        assert C.peek_header(rep["data"]).coder_version == C.CODER_VERSION
        for machine, ctx in MACHINES.items():
            with ctx():
                out = api.decode(rep["data"], model=path, as_array=True)
            if mode == "lossless":
                assert np.array_equal(out, img), machine
            else:
                assert abs(_psnr(out, img) - _psnr(rep["recon"], img)) <= 0.05, (mode, machine)


def test_float_tables_break_on_another_machine_where_exact_ones_do_not(tiny_fast_models, natural):
    """Why the exact path exists: the same files written with float tables (coder version 3)
    fail to decode under the other convolutions."""
    path = tiny_fast_models["selfvae-downscale"]
    img = np.ascontiguousarray(natural[:40, :56])
    failed = []
    for mode in ("rec2", "cgen", "crec", "lossless"):
        with mock.patch.object(X, "supports", lambda model: False):
            data = api.encode(img, mode, 2, model=path)
        assert C.peek_header(data).coder_version == C.FLOAT_CODER_VERSION
        assert api.decode(data, model=path, as_array=True).shape == img.shape  # decodes, as before
        with other_convolutions():
            try:
                api.decode(data, model=path)
            except CodecError:
                failed.append(mode)
    assert failed, "the float path survived the other convolutions: the stand-in tests nothing"


def _probability_outputs(model, dtype):
    ex = X.ExactModel(model, exact_last=True)
    u = torch.randn(1, model.cfg.u_ch, 3, 4, generator=torch.Generator().manual_seed(1)) * 3
    with X.compute_in(dtype):
        y_params = ex.p_img0(u)
        y = X.dmol_point(y_params, model.img_ch[0], model.cfg.mixtures).float()
        mean, log_scale = ex.p_z(1, y, u)
        x_params = ex.p_img(1, mean, y)
    return [y_params, y, mean, log_scale, x_params]


def test_the_probability_networks_give_identical_tables_in_float32_and_float64(tiny_fast_models):
    model = load(tiny_fast_models["selfvae-downscale"])[0]
    for a, b in zip(_probability_outputs(model, torch.float64), _probability_outputs(model, torch.float32)):
        assert torch.equal(a, b)


def test_the_integer_networks_follow_the_float_ones(tiny_fast_models):
    model = load(tiny_fast_models["selfvae-downscale"])[0]
    ex = X.ExactModel(model, exact_last=True)
    u = torch.randn(1, model.cfg.u_ch, 3, 4, generator=torch.Generator().manual_seed(2)) * 3
    y = torch.randint(0, 256, (1, 3, 24, 32), generator=torch.Generator().manual_seed(3)).float()
    with torch.no_grad():
        pairs = [(ex.p_img0(u), model.p_img0(u)), (ex.p_z(1, y, u)[0], model.p_z(1, y, u)[0]),
                 (ex.p_img(1, ex.p_z(1, y, u)[0], y), model.p_img(1, model.p_z(1, y, u)[0], y))]
    for got, want in pairs:
        assert float((got.float() - want).abs().max()) < 0.05 * float(want.abs().max()) + 0.02


def test_learned_steps_come_from_a_table_on_the_1_256_grid():
    v = np.array([0.0, 1.0, -1.0, 0.5, -9.0, 3.25])
    steps = X.step_from_log2(v)
    assert np.array_equal(steps * 256, np.rint(steps * 256)) and steps.min() >= 1 / 256
    assert np.allclose(steps[:4], [1.0, 2.0, 0.5, 2 ** 0.5], atol=1 / 512)
    assert np.allclose(X.exp_of(np.array([-6.0, 0.0, 1.0, 6.0])), np.exp([-6.0, 0.0, 1.0, 6.0]), rtol=1e-12)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here")
def test_decoding_on_a_gpu_without_one_is_a_clear_error(tiny_fast_models, natural, tmp_path):
    path = tiny_fast_models["selfvae-downscale"]
    data = api.encode(np.ascontiguousarray(natural[:32, :32]), "rec2", 2, model=path)
    with pytest.raises(CodecError, match="no CUDA GPU"):
        api.decode(data, model=path, device="cuda")
    with pytest.raises(CodecError, match="unknown device"):
        api.decode(data, model=path, device="warp-drive")
    (tmp_path / "a.svae").write_bytes(data)
    res = CliRunner().invoke(main, ["decode", str(tmp_path / "a.svae"), "--model", path, "--device", "cuda"])
    assert res.exit_code != 0 and "no CUDA GPU" in res.output and not (tmp_path / "a.png").exists()


def test_info_says_what_the_header_crc_guards(tiny_fast_models, natural):
    path = tiny_fast_models["selfvae-downscale"]
    img = np.ascontiguousarray(natural[:32, :32])
    assert api.info(api.encode(img, "rec2", 2, model=path))["crc_of"] == "coded integers"
    assert api.info(api.encode(img, "lossless", 2, model=path))["crc_of"] == "pixels"
    with mock.patch.object(X, "supports", lambda model: False):
        assert api.info(api.encode(img, "rec2", 2, model=path))["crc_of"] == "pixels"


@pytest.mark.parametrize("cin,h,w,k,pad", [(5, 17, 23, 3, 1), (4, 9, 31, 5, (2, 1)), (3, 8, 8, 3, 0), (6, 12, 10, 1, 0)])
def test_convolution_in_strips_gives_the_whole_convolutions_integers(monkeypatch, cin, h, w, k, pad):
    gen = torch.Generator().manual_seed(k * h + w)
    x = torch.randint(-4000, 4000, (1, cin, h, w), generator=gen).double()
    wt = torch.randint(-30000, 30000, (7, cin, k, k), generator=gen).double()
    whole = F.conv2d(x, wt, padding=pad)
    for scratch in (1, 600, 1 << 20):  # one row per strip, a few rows, the whole image at once
        monkeypatch.setattr(X, "STRIP_BYTES", scratch)
        assert torch.equal(X.conv2d_exact(x, wt, padding=pad), whole)
