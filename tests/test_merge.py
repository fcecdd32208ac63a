"""selfcodec merge: one model file from a base and parts trained alone on it (train/merge.py)."""

import pytest
import torch
from click.testing import CliRunner

from selfcodec.cli.main import main
from selfcodec.model.checkpoint import load_model, load_tensors
from tests.conftest import build_tiny
from tests.test_rd import _smooth_images

LAMBDAS = (0.005, 0.01, 0.02)


@pytest.fixture(scope="module")
def base(model_dir):
    return build_tiny(model_dir / "tiny-merge-base.safetensors", "selfvae-downscale", seed=14, network="fast",
                      rd_lambdas=LAMBDAS, u_hyper=4, up_base="bicubic", y_consistent=True, x_context=1, y_context=1,
                      context_ch=8)


def _run(base, tmp_path, name, **kw):
    from selfcodec.train.loop import TrainArgs, train

    data = tmp_path / "data"
    if not data.exists():
        data.mkdir()
        _smooth_images(data, n=2, side=64)
    train(TrainArgs(data=[str(data)], run_dir=str(tmp_path / name), steps=4, batch=2, crop=32, lr=1e-2, warmup=1,
                    compile=False, progress=False, threads=1, init=str(base), bf16=False, log_every=2, **kw))
    return tmp_path / name


def test_parts_trained_alone_join_the_base(base, tmp_path):
    ctx = _run(base, tmp_path, "ctx", train_only=("context", "context0"), lossless=True,
               overrides={"centred_coupling": True})
    half = _run(base, tmp_path, "half", train_only=("refine_half_net",), quant="round",
                overrides={"refine_half": 1, "refine_half_ch": 4})
    out = tmp_path / "merged.safetensors"
    res = CliRunner().invoke(main, ["merge", str(base), "-p", f"{ctx}=context,context0", "-p", f"{half}=refine_half_net",
                                    "-o", str(out), "--dtype", "fp32"])
    assert res.exit_code == 0, res.output
    m = load_model(out)
    assert m.cfg.centred_coupling and m.cfg.refine_half == 1 and m.cfg.refine_half_ch == 4
    merged, before = m.state_dict(), load_tensors(base)
    for run, prefix in ((ctx, "context"), (half, "refine_half_net")):
        trained = load_tensors(run / "ckpt.safetensors", "ema.")
        assert all(torch.equal(merged[k], v.float()) for k, v in trained.items() if k.startswith(prefix))
    assert all(torch.equal(merged[k], v.float()) for k, v in before.items() if not k.startswith("context"))
    assert not all(torch.equal(merged[k], v.float()) for k, v in before.items() if k.startswith("context"))


def test_a_run_that_moved_the_base_is_refused(base, tmp_path):
    moved = _run(base, tmp_path, "moved", train_only=("refine_net", "dec"), quant="round", overrides={"refine": 1})
    res = CliRunner().invoke(main, ["merge", str(base), "-p", f"{moved}=refine_net", "-o", str(tmp_path / "m.safetensors")])
    assert res.exit_code != 0 and "changed the base" in str(res.output) + str(res.exception)


def test_the_base_keeps_its_smoothing_table(base, tmp_path):
    """A part trained on the base before its smoothing table was set does not take the table away."""
    from selfcodec.model.checkpoint import save_model

    ctx = _run(base, tmp_path, "ctx_t", train_only=("context", "context0"), lossless=True)
    model = load_model(base)
    model.cfg.smooth = {"rec2": (20.0, 10.0, 5.0)}
    smoothed = tmp_path / "base-smoothed.safetensors"
    save_model(model, smoothed)
    out = tmp_path / "merged-t.safetensors"
    res = CliRunner().invoke(main, ["merge", str(smoothed), "-p", f"{ctx}=context,context0", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert load_model(out).cfg.smooth == {"rec2": (20.0, 10.0, 5.0)}
