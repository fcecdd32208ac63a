"""The channel-wise context of û and ẑ (entropy/channel_context.py): slices coded in order, each
under a prior corrected from the slices before it, the same on both sides and on every machine."""

import numpy as np
import pytest
import torch

from selfcodec import api
from selfcodec.model.checkpoint import load_model, save_model
from selfcodec.codec import search as SR
from selfcodec.entropy.channel_context import ChannelContext, slice_sizes
from selfcodec.model.registry import build_model, make_config
from tests.conftest import TINY_FAST


def test_slices_cover_every_channel_once():
    assert slice_sizes(128, 3) == [43, 43, 42]
    ctx = ChannelContext(10, 4, 8)
    covered = np.concatenate([np.arange(10)[s] for s in ctx.slices])
    assert np.array_equal(covered, np.arange(10))


def test_a_context_needs_slices_the_fast_networks_and_a_hyperprior_for_u():
    with pytest.raises(ValueError, match="slices"):
        ChannelContext(8, 1, 4)
    with pytest.raises(ValueError, match="fast networks"):
        build_model(make_config("selfvae-downscale", rd_lambdas=(0.01,), z_slices=2))
    with pytest.raises(ValueError, match="u_hyper"):
        build_model(make_config("selfvae-downscale", **TINY_FAST, rd_lambdas=(0.01,), u_slices=2))
    with pytest.raises(ValueError, match="rate-distortion"):
        build_model(make_config("selfvae-downscale", **TINY_FAST, z_slices=2))


def _silenced(path, tmp_path):
    """The model at `path` with its context nets adding nothing (as a model gaining them starts)."""
    m = load_model(path)
    for k in range(m.cfg.scales + 1):
        for net in m.latent_context(k).nets:
            torch.nn.init.zeros_(net[-1].weight)
            torch.nn.init.zeros_(net[-1].bias)
    out = tmp_path / "silenced.safetensors"
    save_model(m, out)
    return str(out)


def test_a_silent_context_codes_what_the_base_prior_does(tiny_fast_context, tmp_path, natural):
    """Slices under their base priors: the same reconstruction as one piece (the prior of each
    element is the same), and the rate of rd_forward equal up to the order of the sums."""
    silent = _silenced(tiny_fast_context, tmp_path)
    m = load_model(silent)
    cfg = {k: v for k, v in vars(m.cfg).items() if k not in ("u_slices", "z_slices")}
    whole = build_model(type(m.cfg)(**cfg)).eval()
    whole.load_state_dict({k: v for k, v in m.state_dict().items() if "_context" not in k})
    x = torch.from_numpy(np.ascontiguousarray(natural[:32, :32])).permute(2, 0, 1)[None].float()
    lv = torch.tensor([1])
    torch.manual_seed(0)
    a = m.rd_forward(x, lv, quant="round")
    torch.manual_seed(0)
    b = whole.rd_forward(x, lv, quant="round")
    for key in ("rate_u", "rate_z", "sse"):
        assert torch.allclose(a[key], b[key], rtol=1e-5), key
    save_model(whole, tmp_path / "whole.safetensors")
    sliced = api.encode_report(natural, "rec2", 2, model=silent)
    one = api.encode_report(natural, "rec2", 2, model=str(tmp_path / "whole.safetensors"))
    assert np.array_equal(sliced["recon"], one["recon"])
    assert abs(len(sliced["data"]) - len(one["data"])) <= 24  # a few coder words and the header


def test_the_context_changes_the_prior_and_the_decoder_follows(tiny_fast_context, tmp_path, natural):
    """With the nets adding something, the slices' means and scales move, so the file differs,
    and the decoder, computing the same corrections, still reproduces the encoder's prediction."""
    silent = _silenced(tiny_fast_context, tmp_path)
    live = api.encode_report(natural, "rec2", 2, model=tiny_fast_context)
    quiet = api.encode_report(natural, "rec2", 2, model=silent)
    assert live["data"] != quiet["data"]
    assert np.array_equal(api.decode(live["data"], model=tiny_fast_context, as_array=True), live["recon"])


def test_the_latent_search_runs_through_the_slices(tiny_fast_context, natural):
    m = load_model(tiny_fast_context)
    x = torch.from_numpy(np.ascontiguousarray(natural[:32, :32])).permute(2, 0, 1)[None].float()
    _, history = SR.search_latents(m, x, 2, 3)
    assert min(history) <= history[0]
    data = api.encode(natural, "rec2", 2, model=tiny_fast_context, search=3)
    api.decode(data, model=tiny_fast_context)  # raises on any mismatch with the encoder's prediction


def test_generation_draws_the_slices_in_order(tiny_fast_context):
    from selfcodec.model import generate as G

    m = load_model(tiny_fast_context)
    x, ys = G.sample(m, n=2, size=32, seed=0)
    again, _ = G.sample(m, n=2, size=32, seed=0)
    assert x.shape == (2, 32, 32, 3) and np.array_equal(x, again)
