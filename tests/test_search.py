"""The encoder-side latent search (encode --search): it lowers the codec's objective, its files
decode exactly with the plain decoder, and it refuses what it cannot do."""

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from selfcodec import api
from selfcodec.model.checkpoint import load_model
from selfcodec.cli.main import main
from selfcodec.codec import search as S
from selfcodec.errors import CodecError

from conftest import build_tiny

LAMBDAS = (0.002, 0.004, 0.008, 0.016, 0.032)


@pytest.fixture(scope="module")
def rd_model(tmp_path_factory):
    return str(build_tiny(tmp_path_factory.mktemp("search") / "tiny-rd.safetensors", seed=11, rd_lambdas=LAMBDAS))


def _x(img):
    return torch.from_numpy(np.array(img, dtype=np.float32)).permute(2, 0, 1)[None]


def test_search_lowers_the_true_objective_and_returns_its_best_iterate(rd_model, natural):
    m = load_model(rd_model)
    x = _x(natural)
    # (a large lr: this tiny model has few latents, and the default lr's steps flip none of them)
    best, history = S.search_latents(m, x, 3, iters=6, lr=0.3)
    assert len(history) == 3  # checked at steps 0, 5 and 6 (S.CHECK_EVERY)
    assert min(history[1:]) < history[0], history  # the search found cheaper latents than the encoder's guess
    steps = [torch.from_numpy(s).float() for s in m.coding_steps(3)]
    with torch.no_grad():
        _, again = S._objective(m, m.images(x), best, steps, LAMBDAS[2], m.u_code_prior())
    assert again == pytest.approx(min(history), rel=1e-5)
    assert all(p.requires_grad for p in m.parameters())  # the model is left as it was


def test_search_is_deterministic(rd_model, natural):
    """The relaxation's draws come from a seeded generator: the same image, the same latents."""
    m = load_model(rd_model)
    a, ha = S.search_latents(m, _x(natural), 3, iters=4, lr=0.3)
    b, hb = S.search_latents(m, _x(natural), 3, iters=4, lr=0.3)
    assert ha == hb and all(torch.equal(s, t) for s, t in zip(a, b))


def test_the_relaxed_rounding_lies_between_neighbours_and_becomes_rounding():
    gen = torch.Generator().manual_seed(1)
    t = torch.linspace(-3, 3, 301)
    mean, step = torch.tensor(0.25), torch.tensor(0.5)
    lo = mean + step * torch.floor((t - mean) / step)
    soft = S._round_sga(t, mean, step, 0.5, gen)
    assert ((soft >= lo - 1e-6) & (soft <= lo + step + 1e-6)).all()
    cold = S._round_sga(t, mean, step, 1e-3, gen)
    rounded = S.round_around(t, mean, step)
    off_half = ((t - mean) / step - torch.floor((t - mean) / step) - 0.5).abs() > 0.05
    assert torch.allclose(cold[off_half], rounded[off_half], atol=1e-4)


def test_searched_files_decode_exactly_with_the_plain_decoder(rd_model, natural):
    img = natural[:40, :56]  # padded to the model's multiple, as real images are
    changed = []
    for level in (1, 5):
        plain = api.encode_report(img, "rec2", level, model=rd_model)
        rep = api.encode_report(img, "rec2", level, model=rd_model, search=4)
        changed.append(rep["data"] != plain["data"])  # the tiny model's level 1 may round to the same symbols
        assert np.array_equal(api.decode(rep["data"], model=rd_model, as_array=True), rep["recon"]), level
    assert any(changed)


def test_searched_files_of_a_model_with_a_hyperprior_decode_exactly(tiny_fast_hyper, natural):
    """The search keeps the encoder's v̂ and moves û and ẑ under the prior v̂ gives û."""
    from selfcodec import zoo
    from selfcodec.codec import modes as M

    net, img = zoo.load(tiny_fast_hyper)[0], np.ascontiguousarray(natural[:32, :64])
    plan, x = M.plan_for("rec2", net.cfg.scales), M._tile_tensor(img)
    searched, _ = M.search_latents(net, x, 2, 4, lr=0.3)  # (coded as they are: encode_tile may keep the plain file)
    enc, rec = M._encode_walk(net, x, plan, 2, "mean", searched, True, None)
    plain, _ = M._encode_walk(net, x, plan, 2, "mean", None, True, None)
    assert enc.streams != plain.streams
    out, _ = M.decode_tile(net, enc.streams, 32, 64, plan, 2, exact=True)
    assert np.array_equal(out, rec)


def test_search_refuses_other_modes_and_elbo_models(rd_model, tiny_model, natural):
    with pytest.raises(CodecError, match="rec2"):
        api.encode(natural, "rec1", 3, model=rd_model, search=2)
    with pytest.raises(CodecError, match="rate-distortion"):
        api.encode(natural, "rec2", 3, model=tiny_model, search=2)
    with pytest.raises(CodecError, match="0 or more"):
        api.encode(natural, "rec2", 3, model=rd_model, search=-1)


def test_cli_search_writes_a_file_that_decodes(rd_model, natural, tmp_path):
    src = tmp_path / "in.png"
    Image.fromarray(np.ascontiguousarray(natural[:32, :32])).save(src)
    out = tmp_path / "out.svae"
    res = CliRunner().invoke(main, ["encode", str(src), "-m", "rec2", "--model", rd_model, "--search", "3",
                                    "--verify", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert out.stat().st_size > 0
    res = CliRunner().invoke(main, ["encode", str(src), "-m", "cgen", "--model", rd_model, "--search", "3",
                                    "-o", str(tmp_path / "no.svae")])
    assert res.exit_code != 0 and "rec2" in res.output
    assert not (tmp_path / "no.svae").exists()


@pytest.mark.parametrize("tile", [1024, 32])
def test_a_searched_file_never_scores_worse_than_the_plain_one(tiny_fast_hyper, natural, tile):
    """The search optimizes x̂ before the codec's RDOQ and smoothing; the encoder keeps its file
    only where the codec's own objective (real bits + λ × MSE of the decoded image) is lower,
    in one tile and across tiles."""
    from selfcodec import zoo

    net = zoo.load(tiny_fast_hyper)[0]
    img = np.ascontiguousarray(natural[:40, :56])
    for level in (1, 2, 3):
        plain = api.encode_report(img, "rec2", level, model=tiny_fast_hyper, tile=tile)
        rep = api.encode_report(img, "rec2", level, model=tiny_fast_hyper, tile=tile, search=4)
        score = lambda r: S.file_score(net, level, len(r["data"]), r["recon"], img)  # noqa: E731
        assert score(rep) <= score(plain) + 1e-9, level
        assert np.array_equal(api.decode(rep["data"], model=tiny_fast_hyper, as_array=True), rep["recon"])
