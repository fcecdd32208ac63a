"""The checkerboard context of û and ẑ (entropy/checkerboard.py): the anchors under the base
prior, the other half under a prior corrected from the anchors around it; the same on both
sides, on every tiling and on every machine."""

import numpy as np
import pytest
import torch

from selfcodec import api
from selfcodec.entropy.checkerboard import ANCHORS, OTHERS, CheckerboardContext
from selfcodec.model.checkpoint import load_model, save_model
from selfcodec.model.registry import build_model, make_config
from tests.conftest import TINY_FAST, build_tiny, natural_crop

LAMBDAS = (0.005, 0.01, 0.02)


@pytest.fixture(scope="module")
def checker_model(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("checker") / "tiny-checker.safetensors"
    return str(build_tiny(path, "selfvae-downscale", seed=11, network="fast", rd_lambdas=LAMBDAS, u_hyper=4,
                          up_base="bicubic", checkerboard=True, slice_ch=8))


def test_the_two_halves_cover_every_position_once():
    t = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)
    a, b = ANCHORS.of(t), OTHERS.of(t)
    assert a.shape == b.shape == (2, 6, 2, 3)
    assert torch.equal(CheckerboardContext(3, 4).join([a, b]), t)
    assert np.array_equal(ANCHORS.step(np.ones((1, 3, 1, 1))), np.ones((1, 6, 1, 1)))
    assert ANCHORS.step(0.5) == 0.5


def test_the_second_half_reads_the_anchors_only():
    """Changing a non-anchor value never changes the second half's prior (the decoder has not
    decoded it yet); changing an anchor does, once the net adds something."""
    torch.manual_seed(0)
    ctx = CheckerboardContext(3, 8)
    torch.nn.init.normal_(ctx.nets[0][-1].weight, std=0.5)
    mean, ls = torch.randn(1, 3, 6, 8), torch.randn(1, 3, 6, 8)
    lat = torch.randn(1, 3, 6, 8)
    prior = ctx.part_prior(1, mean, ls, [ANCHORS.of(lat)])
    other = lat.clone()
    other[..., 0, 1] += 5.0  # a non-anchor
    assert all(torch.equal(p, q) for p, q in zip(prior, ctx.part_prior(1, mean, ls, [ANCHORS.of(other)])))
    other[..., 0, 0] += 5.0  # an anchor
    assert not torch.equal(prior[0], ctx.part_prior(1, mean, ls, [ANCHORS.of(other)])[0])


def test_a_checkerboard_needs_the_fast_networks_a_hyperprior_and_no_channel_slices():
    with pytest.raises(ValueError, match="fast networks"):
        build_model(make_config("selfvae-downscale", rd_lambdas=(0.01,), checkerboard=True))
    with pytest.raises(ValueError, match="u_hyper"):
        build_model(make_config("selfvae-downscale", **TINY_FAST, rd_lambdas=(0.01,), checkerboard=True))
    with pytest.raises(ValueError, match="one context"):
        build_model(make_config("selfvae-downscale", **TINY_FAST, rd_lambdas=(0.01,), u_hyper=4, checkerboard=True,
                                z_slices=2))


def test_latents_have_even_sides():
    m = build_model(make_config("selfvae-downscale", **TINY_FAST, rd_lambdas=(0.01,), u_hyper=4, checkerboard=True))
    assert m.multiple == 2 * 2 ** m.cfg.latent_down


def test_a_silent_checkerboard_codes_what_the_base_prior_does(checker_model, tmp_path):
    """With the net adding nothing every element has its base prior: the same reconstruction and
    rate as the model without the context (the coder's order differs, so a few bytes may)."""
    m = load_model(checker_model)
    for k in range(m.cfg.scales + 1):
        torch.nn.init.zeros_(m.latent_context(k).nets[0][-1].weight)
        torch.nn.init.zeros_(m.latent_context(k).nets[0][-1].bias)
    save_model(m, tmp_path / "silent.safetensors")
    cfg = {k: v for k, v in vars(m.cfg).items() if k != "checkerboard"}
    whole = build_model(type(m.cfg)(**cfg)).eval()
    whole.load_state_dict({k: v for k, v in m.state_dict().items() if "_context" not in k})
    save_model(whole, tmp_path / "whole.safetensors")
    x = torch.from_numpy(natural_crop(64, 64)).permute(2, 0, 1)[None].float()
    lv = torch.tensor([1])
    a, b = m.rd_forward(x, lv, quant="round"), whole.rd_forward(x, lv, quant="round")
    for key in ("rate_u", "rate_z", "sse"):
        assert torch.allclose(a[key], b[key], rtol=1e-5), key
    img = natural_crop(64, 96)
    halves = api.encode_report(img, "rec2", 2, model=str(tmp_path / "silent.safetensors"))
    one = api.encode_report(img, "rec2", 2, model=str(tmp_path / "whole.safetensors"))
    assert np.array_equal(halves["recon"], one["recon"])
    assert abs(len(halves["data"]) - len(one["data"])) <= 24
    assert api.encode_report(img, "rec2", 2, model=checker_model)["data"] != halves["data"]  # a live net moves the priors


@pytest.mark.parametrize("mode", ["rec1", "rec2", "crec", "lossless"])
def test_files_decode_to_the_encoders_prediction(checker_model, mode):
    """Odd sizes included (padded to the doubled multiple)."""
    img = natural_crop(45, 70)
    rep = api.encode_report(img, mode, 2, model=checker_model)
    out = api.decode(rep["data"], model=checker_model, as_array=True)
    if mode == "lossless":
        assert np.array_equal(out, img)
    else:
        assert np.array_equal(out, rep["recon"])


def test_the_same_pixels_whatever_the_tile_size(checker_model):
    """The context runs over the whole image's anchors, so tiles change nothing but the streams."""
    img = natural_crop(128, 192)
    one = api.encode_report(img, "rec2", 2, model=checker_model, tile=1024)
    tiled = api.encode_report(img, "rec2", 2, model=checker_model, tile=64)
    assert np.array_equal(api.decode(tiled["data"], model=checker_model, as_array=True), one["recon"])
    assert np.array_equal(tiled["recon"], one["recon"])
