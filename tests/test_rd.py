"""Rate-distortion models (cfg.rd_lambdas): learned latent steps per level, their exact coding,
the objective's terms and gradients, and a short training run started from an ELBO model."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from selfcodec import api
from selfcodec.entropy import rdoq as rdoq_module
from selfcodec.entropy.dmol import DMoL
from selfcodec.model.checkpoint import load_model, save_model
from selfcodec.codec import modes as M
from selfcodec.errors import CodecError
from selfcodec.model.base import rd_loss
from selfcodec.model.registry import build_model, make_config
from selfcodec.nn.blocks import data_dependent_init
from selfcodec.train.loop import TrainArgs, export, train

from conftest import TINY, build_tiny

LAMBDAS = (0.002, 0.004, 0.008, 0.016, 0.032)


@pytest.fixture(scope="module")
def rd_model(tmp_path_factory):
    """A tiny RD model whose level steps are 4, 2, 1, 1/2, 1/4 (plus a little per channel)."""
    path = build_tiny(tmp_path_factory.mktemp("rd") / "tiny-rd.safetensors", seed=5, rd_lambdas=LAMBDAS)
    m = load_model(path)
    with torch.no_grad():
        n = m.rd_log2_step.shape[1]
        m.rd_log2_step.copy_(torch.tensor([2.0, 1.0, 0.0, -1.0, -2.0])[:, None] + torch.linspace(-0.3, 0.3, n))
    save_model(m, path)
    return str(path)


def test_coding_steps_lie_on_the_1_256_grid_and_follow_the_weights(rd_model):
    m = load_model(rd_model)
    for level in range(1, len(LAMBDAS) + 1):
        steps = m.coding_steps(level)
        assert [s.shape[1] for s in steps] == [m.cfg.u_ch, m.cfg.z_ch]
        flat = np.concatenate([s.ravel() for s in steps])
        assert np.array_equal(flat * 256, np.rint(flat * 256))
        want = 2.0 ** m.rd_log2_step[level - 1].detach().double().numpy()
        assert np.abs(flat - want).max() <= 1 / 512 + 1e-12


def test_every_mode_every_level_decodes_what_the_encoder_predicted(rd_model, natural):
    for mode in M.modes_for(1):
        for level in range(1, len(LAMBDAS) + 1):
            rep = api.encode_report(natural, mode, level, model=rd_model)
            out = api.decode(rep["data"], model=rd_model, as_array=True)
            assert np.array_equal(out, rep["recon"]), (mode, level)
            if mode == "lossless":
                assert np.array_equal(out, natural)


def test_finer_learned_steps_cost_more_bits(rd_model, natural):
    sizes = [len(api.encode(natural, "rec2", level, model=rd_model)) for level in range(1, len(LAMBDAS) + 1)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1], sizes


def test_a_level_beyond_the_models_lambdas_is_refused(tmp_path, natural):
    path = build_tiny(tmp_path / "rd3.safetensors", seed=6, rd_lambdas=(0.01, 0.02, 0.04))
    api.encode(natural, "rec2", 3, model=str(path))
    with pytest.raises(CodecError, match="level 4 does not exist"):
        api.encode(natural, "rec2", 4, model=str(path))


def test_rd_terms_are_finite_and_gradients_reach_the_steps():
    torch.manual_seed(0)
    m = build_model(make_config("selfvae-downscale", **TINY, rd_lambdas=LAMBDAS))
    x = torch.randint(0, 256, (4, 3, 2 * m.multiple, 2 * m.multiple)).float()
    data_dependent_init(m, x)
    lv = torch.tensor([0, 1, 3, 4])
    t = m(x, level_idx=lv)
    for k in ("rate_u", "rate_z", "sse", "re_x", "re_y", "flow_u"):
        assert t[k].shape == (4,) and torch.isfinite(t[k]).all(), k
    loss = rd_loss(t, torch.tensor(LAMBDAS)[lv], x.shape[2] * x.shape[3], 0.01)
    loss.backward()
    g = m.rd_log2_step.grad
    assert torch.isfinite(g).all()
    assert (g[[0, 1, 3, 4]].abs().sum(1) > 0).all() and g[2].abs().sum() == 0  # only the levels drawn


def test_dmol_mean_is_dmol_point_before_rounding():
    torch.manual_seed(1)
    params = torch.randn(2, DMoL.channels(3, 4), 5, 6)
    mean = DMoL.mean(params, 3, 4)
    point = DMoL.point(params, 3, 4, "mean")
    assert (mean - point).abs().max() <= 1.0  # the point estimate rounds each channel, coupling included


def _smooth_images(folder, n=6, side=48):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:side, 0:side]
    for i in range(n):
        img = np.stack([(xx * (i + 1) * 3) % 256, (yy * 4 + i * 20) % 256, ((xx + yy) * 2) % 256], -1)
        Image.fromarray(np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)).save(folder / f"{i}.png")


def test_rd_training_from_an_elbo_model_lowers_the_loss_and_ships(tmp_path, natural):
    data = tmp_path / "data"
    data.mkdir()
    _smooth_images(data)
    init = build_tiny(tmp_path / "elbo.safetensors", seed=7, latent_down=2)
    run = tmp_path / "run"
    args = TrainArgs(data=[str(data)], run_dir=str(run), steps=60, batch=4, crop=32, lr=3e-3, warmup=5,
                     log_every=10, compile=False, progress=False, threads=1, init=str(init),
                     overrides={"rd_lambdas": LAMBDAS}, bf16=False)
    train(args)
    header, *rows = [r.split(",") for r in (run / "log.csv").read_text().splitlines()]
    assert "psnr_l4" in header and "bpp_z_l0" in header
    loss = header.index("loss")
    assert float(rows[-1][loss]) < float(rows[0][loss]), (rows[0][loss], rows[-1][loss])
    shipped = export(run, tmp_path / "rd.safetensors")
    rep = api.encode_report(natural, "rec2", 5, model=str(shipped))
    assert np.array_equal(api.decode(rep["data"], model=str(shipped), as_array=True), rep["recon"])
    assert math.isfinite(float(load_model(shipped).rd_log2_step.detach().sum()))


def test_a_mode_with_its_own_default_model_decodes_by_name(tmp_path, monkeypatch, natural):
    """zoo.MODE_DEFAULTS (empty in this release: every mode uses the default) names another
    shipped model for a mode; its files name it, and decode without --model."""
    from selfcodec import zoo
    from selfcodec.codec import container as C

    build_tiny(tmp_path / "selfvae-downscale.safetensors", seed=8, rd_lambdas=LAMBDAS, name="selfvae-downscale")
    monkeypatch.setattr(zoo, "MODELS_DIR", tmp_path)
    monkeypatch.setattr(zoo, "MODE_DEFAULTS", {"lossless": "selfvae-downscale-elbo"})
    assert zoo.default_for("lossless") == "selfvae-downscale"  # that model not shipped: the default
    build_tiny(tmp_path / "selfvae-downscale-elbo.safetensors", seed=9, name="selfvae-downscale-elbo")
    for mode, want in (("lossless", "selfvae-downscale-elbo"), ("rec2", "selfvae-downscale")):
        rep = api.encode_report(natural, mode, 3)
        assert C.peek_header(rep["data"]).model_name == want
        assert np.array_equal(api.decode(rep["data"], as_array=True), rep["recon"])


def test_demo_prints_every_mode_with_its_model(rd_model, tmp_path):
    from click.testing import CliRunner

    from selfcodec.cli.main import main

    img = tmp_path / "small.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)).save(img)
    res = CliRunner().invoke(main, ["demo", "--image", str(img), "--model", rd_model])
    assert res.exit_code == 0, res.output
    rows = {line.split()[0]: line.split() for line in res.output.splitlines()[1:]}
    assert set(rows) == set(api.MODES)
    assert rows["lossless"][3] == "lossless" and rows["lossless"][-1] == "tiny-rd"


def _with_refine(rd_model, path, active: bool):
    """The tiny RD model plus a refine filter: as it starts when a run adds one (the identity),
    or with its last layer switched on."""
    base = load_model(rd_model)
    m = build_model(make_config("selfvae-downscale", **{**vars(base.cfg), "refine": 1}))
    missing, unexpected = m.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("refine_net.") for k in missing)
    if active:
        with torch.no_grad():
            m.refine_net[-1].g.fill_(0.05)
    save_model(m.eval(), path)
    return str(path)


def test_a_new_refine_filter_decodes_as_before_and_an_active_one_exactly(rd_model, natural, tmp_path, monkeypatch):
    # the filter's effect on x̂: not the bicubic upscale a random model's crec tile would carry instead
    monkeypatch.setattr(M, "has_upscale_choice", lambda model, plan: False)
    fresh = _with_refine(rd_model, tmp_path / "fresh.safetensors", active=False)
    active = _with_refine(rd_model, tmp_path / "active.safetensors", active=True)
    for mode in M.modes_for(1):
        base = api.encode_report(natural, mode, 3, model=rd_model)["recon"]
        assert np.array_equal(api.encode_report(natural, mode, 3, model=fresh)["recon"], base), mode
        rep = api.encode_report(natural, mode, 3, model=active)
        assert np.array_equal(api.decode(rep["data"], model=active, as_array=True), rep["recon"]), mode
        # the filter acts only where z_K was coded (rec2, crec); lossless stays exact
        assert np.array_equal(rep["recon"], base) == (mode not in ("rec2", "crec")), mode


def test_hard_quantization_in_training_is_what_the_codec_codes(rd_model, natural):
    m = load_model(rd_model)
    x = torch.from_numpy(np.array(natural, dtype=np.float32)).permute(2, 0, 1)[None]
    for level in (3, 5):  # (at level 1 this tiny model codes a few dozen bits: table overheads dominate)
        with torch.no_grad():
            t = m.rd_forward(x, torch.tensor([level - 1]), quant="rdoq")  # the encoder's quantizer
        rep = api.encode_report(natural, "rec2", level, model=rd_model)
        est = sum(s["estimated_bits"] for s in rep["streams"].values())
        bits = float(t["rate_u"] + t["rate_z"]) / math.log(2)
        assert abs(bits - est) <= 0.06 * est, (level, bits, est)  # the codec's integer tables cost ~3 % more here
        mse = ((rep["recon"].astype(np.float64) - natural) ** 2).mean()
        assert abs(float(t["sse"]) / natural.size - mse) <= 0.005 * mse, (level, float(t["sse"]) / natural.size, mse)


def test_mixed_quantization_decodes_rounded_latents_and_trains_the_encoders(rd_model, natural, monkeypatch):
    m = load_model(rd_model)
    x = torch.from_numpy(np.array(natural, dtype=np.float32)).permute(2, 0, 1)[None]
    lv = torch.tensor([2])
    with torch.no_grad():
        rounded = m.rd_forward(x, lv, quant="round")
    torch.manual_seed(0)
    mixed = m.rd_forward(x, lv, quant="mixed")
    # the decoders read exactly what the codec sends; the rates are the noisy stand-in's
    assert torch.allclose(mixed["sse"], rounded["sse"], rtol=1e-5)
    assert not torch.equal(mixed["rate_z"], rounded["rate_z"])
    mixed["sse"].sum().backward()  # the distortion's straight-through gradient reaches both encoders
    for enc in (m.enc_u, m.enc_z):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.parameters())
    monkeypatch.setattr(rdoq_module, "WEIGHT", 1.0)  # strong enough to move this tiny model's symbols
    torch.manual_seed(0)
    rdoq = m.rd_forward(x, lv, quant="rdoq")  # the decoders read the encoder's choice
    assert not torch.equal(rdoq["sse"], mixed["sse"])
    with pytest.raises(ValueError, match="quant must be"):
        m.rd_forward(x, lv, quant="hard")


def test_train_only_leaves_every_other_tensor_as_loaded(rd_model, tmp_path):
    from selfcodec.model.checkpoint import load_tensors

    data = tmp_path / "data"
    data.mkdir()
    _smooth_images(data, n=3)
    run = tmp_path / "run"
    train(TrainArgs(data=[str(data)], run_dir=str(run), steps=3, batch=2, crop=32, lr=1e-2, warmup=1, compile=False,
                    progress=False, threads=1, init=rd_model, overrides={"refine": 1}, bf16=False,
                    train_only=("refine_net",), quant="round"))
    before, after = load_tensors(rd_model), load_tensors(run / "ckpt.safetensors", "model.")
    assert set(after) - set(before) and all(k.startswith("refine_net.") for k in set(after) - set(before))
    assert all(torch.equal(after[k], before[k].float()) for k in before)
    assert after["refine_net.3.g"].abs().sum() > 0  # the last layer (conv, ELU, 1 dense block, conv) learnt
    with pytest.raises(ValueError, match="no module named refine_nett"):
        train(TrainArgs(data=[str(data)], run_dir=str(tmp_path / "typo"), steps=1, batch=2, crop=32, compile=False,
                        progress=False, threads=1, init=rd_model, bf16=False, train_only=("refine_nett",)))
