"""The fast family's pixel context (entropy/pixel_context.py): y and x coded exactly in three
stages per 2x2 block, each stage's parameters corrected from the pixels before it. It must
code exactly, cost what training says it costs, and leave every lossy mode as it was."""

import numpy as np
import pytest
import torch

from selfcodec import api
from selfcodec.model.checkpoint import load_model
from tests.conftest import build_tiny, natural_crop, without_part

LAMBDAS = (0.005, 0.01, 0.02)


CENTRED = {"centred_coupling": True, "context_skip": True}


@pytest.fixture(scope="module", params=[{}, CENTRED], ids=["raw", "centred"])
def with_context(request, model_dir) -> str:
    """A fast, y-consistent model with pixel contexts for x and y (random, non-zero): with the
    raw coupling, and with the centred coupling and the linear skip path."""
    name = "tiny-fast-pixctx" + "-centred" * bool(request.param)
    return str(build_tiny(model_dir / f"{name}.safetensors", "selfvae-downscale", seed=11, network="fast",
                          rd_lambdas=LAMBDAS, u_hyper=4, up_base="bicubic", y_consistent=True,
                          x_context=1, y_context=1, context_ch=8, **request.param))


@pytest.fixture(scope="module")
def without_context(with_context, model_dir) -> str:
    """The same weights without the context nets."""
    return without_part(with_context, model_dir / (with_context.rsplit("/", 1)[-1][:-12] + "-plain.safetensors"),
                        "context", x_context=0, y_context=0, centred_coupling=False, context_skip=False)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return natural_crop(64, 64, 100, 150)


def test_lossless_round_trips_exactly_under_the_context(with_context, photo):
    data = api.encode(photo, mode="lossless", model=with_context)
    assert np.array_equal(np.asarray(api.decode(data, model=with_context)), photo)


def test_the_context_changes_what_is_sent_exactly_and_nothing_lossy(with_context, without_context, photo):
    """The lossy files carry the same streams with or without the context (only the header
    names another model: cgen and crec send y binned at these levels, which the context does
    not code) and decode to the same pixels; the lossless file's exact layers differ."""
    for mode in ("rec1", "rec2", "cgen", "crec"):
        a = api.encode_report(photo, mode=mode, level=2, model=with_context)
        b = api.encode_report(photo, mode=mode, level=2, model=without_context)
        assert np.array_equal(a["recon"], b["recon"]), mode
        assert a["streams"] == b["streams"], mode
    a, b = (api.encode_report(photo, mode="lossless", level=2, model=m)["streams"] for m in (with_context, without_context))
    assert a["u"] == b["u"] and a["y"] != b["y"] and a["x"] != b["x"], (a, b)


def test_training_measures_what_the_file_costs(with_context, photo):
    """lossless_forward (what --lossless training minimises) predicts the coded streams."""
    m = load_model(with_context)
    rep = api.encode_report(photo, mode="lossless", level=2, model=with_context)
    x = torch.from_numpy(photo.copy()).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        t = m.lossless_forward(x, torch.tensor([1]))
    predicted = float(sum(t[k] for k in ("rate_u", "rate_z", "re_x", "re_y"))) / np.log(2)
    coded = 8 * sum(s["bytes"] for s in rep["streams"].values())
    assert abs(coded - predicted) < 0.03 * predicted + 64 * 8, (coded, predicted)


def test_lossless_training_teaches_the_contexts_alone(with_context, tmp_path):
    """--lossless --train-only context,context0: the contexts learn, every other tensor stays as
    loaded, and the lossless code length falls."""
    from selfcodec.model.checkpoint import load_tensors
    from selfcodec.train.loop import TrainArgs, train
    from tests.test_rd import _smooth_images

    data = tmp_path / "data"
    data.mkdir()
    _smooth_images(data, n=3, side=64)
    run = tmp_path / "run"
    res = train(TrainArgs(data=[str(data)], run_dir=str(run), steps=30, batch=2, crop=32, lr=1e-2, warmup=1,
                          compile=False, progress=False, threads=1, init=with_context, bf16=False, log_every=10,
                          train_only=("context", "context0"), lossless=True))
    before, after = load_tensors(with_context), load_tensors(run / "ckpt.safetensors", "model.")
    changed = {k for k in before if not torch.equal(after[k], before[k].float())}
    assert changed and all(k.startswith("context") for k in changed)
    first = float(open(run / "log.csv").read().splitlines()[1].split(",")[3])
    assert res["loss"] < first, (first, res["loss"])


def test_centred_correction_of_zero_changes_nothing():
    """add_centred with no correction gives the raw parameters back (to rounding), and a
    correction of a channel's predicted value moves that prediction alone: the others' stay."""
    from selfcodec.entropy.dmol import DMoL, dmol_split

    torch.manual_seed(0)
    p = torch.randn(2, DMoL.channels(3, 2), 4, 4, dtype=torch.float64)
    assert torch.allclose(DMoL.add_centred(p, torch.zeros_like(p), 3, 2, torch.tanh), p, atol=1e-12)
    corr = torch.zeros_like(p)
    corr[:, 2 + 2 * 2] = 0.25  # component 0 of channel 2 (B): means start at k = 2, channel-major
    q = DMoL.add_centred(p, corr, 3, 2, torch.tanh)

    def predicted(params):  # each channel's mean when the earlier channels take their predicted values
        _, m, _, a = dmol_split(params, 3, 2)
        pred = m.clone()
        pred[:, 1] = m[:, 1] + a[:, 0] * pred[:, 0]
        pred[:, 2] = m[:, 2] + a[:, 1] * pred[:, 0] + a[:, 2] * pred[:, 1]
        return pred

    diff = predicted(q) - predicted(p)
    assert torch.allclose(diff[:, :2], torch.zeros_like(diff[:, :2]), atol=1e-12)
    assert torch.allclose(diff[:, 2, 0], torch.full_like(diff[:, 2, 0], 0.25)) and diff[:, 2, 1].abs().max() < 1e-12


def test_lossless_training_needs_a_rate_distortion_model(model_dir, tmp_path):
    """An ELBO model has no levels to code at: the flag is refused, not ignored."""
    from selfcodec.train.loop import TrainArgs, train

    elbo = build_tiny(model_dir / "tiny-elbo-for-lossless.safetensors", seed=13)
    with pytest.raises(ValueError, match="rate-distortion"):
        train(TrainArgs(data=["unused"], run_dir=str(tmp_path / "run"), steps=1, init=str(elbo), lossless=True,
                        progress=False, compile=False))


@pytest.mark.parametrize("skip", [False, True])
def test_a_stage_computes_its_own_phases_as_the_whole_net_does(skip):
    """With `phases`, the kept phases' corrections are the whole output's, exactly so on the
    integer path, and the others are zero (a stage never reads them)."""
    from selfcodec.entropy.pixel_context import PixelContext
    from selfcodec.model import exact as X

    torch.manual_seed(0)
    ctx = PixelContext(5, 12, 7, 8, 1, skip=skip)
    for m in ctx.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.normal_(m.weight, std=0.3)
            torch.nn.init.normal_(m.bias, std=0.1)
    x = torch.randn(1, 17, 6, 5)
    phases = [1, 2]
    kept = torch.tensor([c % 4 in phases for c in range(28)])
    for net, inp in ((ctx, x), (X.integer_copy(ctx), X.to_grid(x))):
        whole, part = net(1, inp), net(1, inp, phases)
        assert torch.allclose(part[:, kept], whole[:, kept], atol=1e-5) and not part[:, ~kept].any()
    assert torch.equal(part[:, kept], whole[:, kept])  # integers: exactly
