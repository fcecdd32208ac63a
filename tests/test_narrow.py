"""Starting a narrower fast model from a wider one's weights (selfcodec.model.narrow)."""

import dataclasses

import pytest
import torch

from selfcodec.model.registry import build_model, make_config
from selfcodec.model.narrow import narrow_state, narrow_tensor

WIDE = dict(network="fast", ch=24, mid_ch=16, head_ch=8, u_ch=6, z_ch=8, u_hyper=4, rd_lambdas=(0.001, 0.01))
NARROW = dict(ch=16, mid_ch=12, head_ch=4)


def _models():
    torch.manual_seed(0)
    cfg = make_config("selfvae-downscale", **WIDE)
    return build_model(cfg), build_model(dataclasses.replace(cfg, **NARROW))


def _input_dim(module: torch.nn.Module) -> int:
    return 0 if isinstance(module, torch.nn.ConvTranspose2d) else 1


@torch.no_grad()
def test_a_wide_model_whose_dropped_channels_are_silent_computes_what_its_narrowed_copy_does():
    """Zero every weight that reads a channel the narrowing drops: the wide model's kept channels
    then compute exactly what the narrow model's do, so the two give the same latents and
    likelihood parameters; this holds only if every layer kept the same channels its inputs
    did, the concatenating layers' parts included."""
    wide, narrow = _models()
    for name, mod in wide.named_modules():
        for pname, p in mod.named_parameters(recurse=False):
            if p.dim() < 2:
                continue
            full = f"{name}.{pname}" if name else pname
            want = narrow.state_dict()[full].shape
            d = _input_dim(mod) if pname == "weight" else 1  # GDN's gamma: (out, in)
            tag = torch.arange(p.shape[d], dtype=torch.float32).view([-1 if i == d else 1 for i in range(p.dim())])
            kept = narrow_tensor(full, tag.expand(p.shape).contiguous(), want).unique().long()
            drop = torch.ones(p.shape[d], dtype=torch.bool)
            drop[kept] = False
            p.index_fill_(d, drop.nonzero().flatten(), 0.0)
    narrow.load_state_dict(narrow_state(wide.state_dict(), narrow), strict=True)
    x = torch.randint(0, 256, (2, 3, 64, 64)).float()
    imgs = wide.images(x)
    u = wide.q_u(imgs[0])
    torch.testing.assert_close(narrow.q_u(imgs[0]), u, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(narrow.p_img0(u), wide.p_img0(u), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(narrow.q_v(u), wide.q_v(u), rtol=1e-4, atol=1e-4)
    v = wide.q_v(u)
    torch.testing.assert_close(narrow.u_code_prior(v, u.shape[-2:]), wide.u_code_prior(v, u.shape[-2:]))
    z = wide.q_z(1, imgs[1])
    torch.testing.assert_close(narrow.q_z(1, imgs[1]), z, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(narrow.p_z(1, imgs[0], u), wide.p_z(1, imgs[0], u), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(narrow.p_img(1, z, imgs[0]), wide.p_img(1, z, imgs[0]), rtol=1e-4, atol=1e-4)


def test_narrowing_covers_every_tensor_and_keeps_the_latents_and_heads_whole():
    wide, narrow = _models()
    state = narrow_state(wide.state_dict(), narrow)
    assert state.keys() == narrow.state_dict().keys()
    assert torch.equal(state["rd_log2_step"], wide.state_dict()["rd_log2_step"])
    mix = state["dec.0.mix.0.weight"]  # [features, the coarser image's space-to-depth]: the image part whole
    image = wide.state_dict()["dec.0.mix.0.weight"].shape[1] - WIDE["ch"]
    assert torch.equal(mix[:, -image:], wide.state_dict()["dec.0.mix.0.weight"][: NARROW["ch"], -image:])


def test_a_model_cannot_be_widened():
    wide, narrow = _models()
    with pytest.raises(ValueError, match="cannot be narrowed"):
        narrow_state(narrow.state_dict(), wide)


def test_a_grown_head_kernel_starts_as_the_smaller_one(tmp_path):
    """--init with --set head_k=3 from a head_k=1 model: the 1x1 head at the centre of the 3x3,
    so the wider-seeing model computes what the first did until it trains."""
    import torch

    from selfcodec.model.narrow import narrow_state
    from tests.conftest import TINY_FAST

    torch.manual_seed(0)
    small = build_model(make_config("selfvae-downscale", **TINY_FAST, rd_lambdas=(0.01,))).eval()
    big = build_model(make_config("selfvae-downscale", **TINY_FAST, rd_lambdas=(0.01,), head_k=3)).eval()
    assert big.dec[0].head.weight.shape[-2:] == (3, 3)
    big.load_state_dict(narrow_state(small.state_dict(), big))
    x = torch.randint(0, 256, (1, 3, 32, 32)).float()
    with torch.no_grad():
        u = torch.round(small.q_u(small.images(x)[0]))
        assert torch.allclose(small.p_img0(u), big.p_img0(u), atol=1e-5)
        y = small.images(x)[0]
        z = torch.round(small.q_z(1, x))
        assert torch.allclose(small.p_img(1, z, y), big.p_img(1, z, y), atol=1e-5)
