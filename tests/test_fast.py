"""The fast network family: structure (latents at 1/16 of x, no layer at x's full resolution,
the rec2 decoder's cost per pixel), every preset built with it, and every mode through the codec."""

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from selfcodec import api, zoo
from selfcodec.errors import ModelMismatchError
from selfcodec.codec import modes as M
from selfcodec.model.base import rd_loss
from selfcodec.model.registry import FAST, build_model, make_config
from selfcodec.model.fast import FastSelfVAE

PRESETS = ("selfvae-downscale", "selfvae-downscale-3l", "selfvae-sketch", "vae")


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_builds_with_latents_at_a_sixteenth_and_no_full_resolution_layer(preset):
    m = build_model(make_config(preset, network="fast"))
    assert isinstance(m, FastSelfVAE) and m.multiple == 16
    x = torch.randint(0, 256, (1, 3, 64, 96)).float()
    widest = []
    hooks = [mod.register_forward_hook(lambda mod, i, o: widest.append(o.shape[-1]))
             for mod in m.modules() if isinstance(mod, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    with torch.no_grad():
        t = m.rd_forward(x, torch.zeros(1, dtype=torch.long)) if m.cfg.rd_lambdas else m(x)
        imgs = m.images(x)
        u = m.q_u(imgs[0])
        assert u.shape[-2:] == (4, 6)
        prev = u
        for k in range(1, m.cfg.scales + 1):
            z = m.q_z(k, imgs[k])
            mean, _ = m.p_z(k, imgs[k - 1], prev)
            assert z.shape[-2:] == mean.shape[-2:] == (4, 6)
            prev = z
    for h in hooks:
        h.remove()
    assert max(widest) <= 96 // 2, "a layer runs at x's full resolution"
    assert all(torch.isfinite(v).all() for v in t.values())


def _rec2_decode_macs_per_pixel(model, h=64, w=64):
    x = torch.randint(0, 256, (1, 3, h, w)).float()
    imgs = model.images(x)
    with torch.no_grad():
        u = torch.round(model.q_u(imgs[0]))
        z = torch.round(model.q_z(1, imgs[1]))
        counter = FlopCounterMode(display=False)
        with counter:  # what the rec2 decoder runs: y from û, z's prior from (ŷ, û), x from (ŷ, ẑ)
            y = torch.round(model.dmol_mean(model.p_img0(u), model.img_ch[0], model.cfg.mixtures))
            model.p_z(1, y, u)
            model.p_img(1, z, y)
    return counter.get_total_flops() / 2 / (h * w)


def test_the_fast_default_decodes_rec2_within_40k_mac_per_pixel_a_third_of_the_densenet():
    fast = _rec2_decode_macs_per_pixel(build_model(make_config("selfvae-downscale", network="fast", mixtures=1)))
    dense = _rec2_decode_macs_per_pixel(build_model(make_config("selfvae-downscale")))
    assert fast <= 40_000 and dense > 3 * fast


def test_fast_defaults_apply_only_to_the_fast_family():
    assert make_config("selfvae-downscale", network="fast").ch == FAST["ch"]
    assert make_config("selfvae-downscale", network="fast", ch=64).ch == 64
    assert make_config("selfvae-downscale").network == "densenet"
    with pytest.raises(ValueError, match="network family"):
        build_model(make_config("selfvae-downscale", network="nope"))


@pytest.mark.parametrize("extra", [{}, dict(u_hyper=4, up_base="bicubic")])
def test_rd_terms_with_the_ypreview_and_cgen_weights_train_every_part(extra):
    m = build_model(make_config("selfvae-downscale", network="fast", ch=16, mid_ch=8, head_ch=8, u_ch=4, z_ch=8,
                                mixtures=1, rd_lambdas=(0.01, 0.02), **extra))
    if extra:  # the hyperprior's last layer starts at zero; past the first update gradients reach all of it
        torch.nn.init.normal_(m.hyper_s.body[-1].weight, std=0.1)
    x = torch.randint(0, 256, (4, 3, 32, 32)).float()
    t = m(x, level_idx=torch.tensor([0, 1, 0, 1]), quant="mixed", cgen=1)
    assert t["mse_cgen"].shape == (1,) and t["mse_y"].shape == (4,)
    loss = rd_loss(t, torch.tensor([0.01, 0.02, 0.01, 0.02]), 32 * 32, 0.01, y_weight=0.02, cgen_weight=0.1)
    loss.backward()
    for name in ("enc_u", "dec_0", "enc_z", "prior", "dec", "rd_log2_step") + (("hyper_a", "hyper_s", "v_log2_step",
                                                                            "v_code_mean") if extra else ()):
        grads = [p.grad for n, p in m.named_parameters() if n.split(".")[0] == name]
        assert grads and all(g is not None and torch.isfinite(g).all() for g in grads), name


@pytest.mark.parametrize("preset", PRESETS + ("hyperprior", "context"))
def test_every_mode_of_every_fast_preset_decodes_what_the_encoder_predicted(tiny_fast_models, tiny_fast_hyper,
                                                                            tiny_fast_context, preset, natural):
    path = {"hyperprior": tiny_fast_hyper, "context": tiny_fast_context}.get(preset) or tiny_fast_models[preset]
    levels = zoo.load(path)[0].cfg.scales
    img = np.ascontiguousarray(natural[:40, :56])  # not a multiple of 16: padded and cropped
    for mode in [m for m in M.modes_for(levels) if m in api.MODES or m.endswith("-y1")]:
        rep = api.encode_report(img, mode=mode, level=2, model=path)
        out = api.decode(rep["data"], model=path, as_array=True)  # raises on any mismatch with the prediction
        assert np.array_equal(out, rep["recon"]), mode
        if mode == "lossless":
            assert np.array_equal(out, img)


def test_files_of_an_earlier_default_decode_after_it_is_renamed(tmp_path, monkeypatch, tiny_model, tiny_fast_models,
                                                                   natural):
    """A new default takes the shipped name; the earlier weights stay under another name, and
    files that name the default but carry the earlier weights' hash decode with them."""
    import shutil

    monkeypatch.setattr(zoo, "MODELS_DIR", tmp_path)
    shutil.copy(tiny_model, tmp_path / "selfvae-downscale.safetensors")
    old = api.encode(natural, "rec2", 2, model="selfvae-downscale")
    want = api.decode(old, as_array=True)
    (tmp_path / "selfvae-downscale.safetensors").rename(tmp_path / "selfvae-downscale-dense.safetensors")
    shutil.copy(tiny_fast_models["selfvae-downscale"], tmp_path / "selfvae-downscale.safetensors")
    assert np.array_equal(api.decode(old, as_array=True), want)
    (tmp_path / "selfvae-downscale-dense.safetensors").unlink()
    with pytest.raises(ModelMismatchError):
        api.decode(old)


def test_files_naming_a_model_that_was_renamed_decode_with_it(tmp_path, monkeypatch, tiny_model, tiny_fast_models,
                                                               natural):
    """A shipped model takes another name (selfvae-downscale-fast became selfvae-downscale): files
    that name the old one find the weights by their hash, not the default's."""
    import shutil

    monkeypatch.setattr(zoo, "MODELS_DIR", tmp_path)
    shutil.copy(tiny_model, tmp_path / "selfvae-downscale.safetensors")  # the default: other weights
    shutil.copy(tiny_fast_models["selfvae-downscale"], tmp_path / "selfvae-downscale-fast.safetensors")
    data = api.encode(natural, "rec2", 2, model="selfvae-downscale-fast")
    want = api.decode(data, as_array=True)
    (tmp_path / "selfvae-downscale-fast.safetensors").rename(tmp_path / "selfvae-downscale-renamed.safetensors")
    assert np.array_equal(api.decode(data, as_array=True), want)


def test_a_model_gaining_a_hyperprior_starts_with_the_factorized_prior_it_had():
    m = build_model(make_config("selfvae-downscale", network="fast", ch=16, mid_ch=8, head_ch=8, u_ch=4, z_ch=8,
                                mixtures=1, rd_lambdas=(0.01,), u_hyper=4))
    with torch.no_grad():
        m.u_code_mean.normal_()
        u = m.q_u(m.images(torch.randint(0, 256, (1, 3, 48, 80)).float())[0])  # û 3 x 5: v 1 x 2; û's prior cropped
        v = torch.round(m.q_v(u))
        assert u.shape == (1, 4, 3, 5) and v.shape == m.v_shape(u.shape) == (1, 4, 1, 2)
        mean, log_scale = m.u_code_prior(v, u.shape[-2:])
    assert mean.shape == log_scale.shape == u.shape
    assert torch.equal(mean, m.u_code_mean.expand_as(u)) and torch.equal(log_scale, m.u_code_log_scale.expand_as(u))


def test_encoder_residual_blocks_start_as_the_encoder_they_join_and_cost_the_decoder_nothing():
    """enc_res adds blocks to the analysis transforms alone: a model gaining them loads the
    weights it had (the other layers keep their names), encodes as before, and its decoder
    networks are the same."""
    small = dict(network="fast", ch=16, mid_ch=8, head_ch=8, u_ch=4, z_ch=8, mixtures=1, rd_lambdas=(0.01,))
    torch.manual_seed(0)
    base = build_model(make_config("selfvae-downscale", **small))
    deep = build_model(make_config("selfvae-downscale", **small, enc_res=2))
    missing, unexpected = deep.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and missing and all(".res" in m and m.startswith(("enc_u.", "enc_z.")) for m in missing)
    x = torch.randint(0, 256, (1, 3, 64, 64)).float()
    with torch.no_grad():
        for a, b in zip(base.images(x), deep.images(x)):
            assert torch.equal(a, b)
        assert torch.equal(base.q_u(base.images(x)[0]), deep.q_u(deep.images(x)[0]))
        assert torch.equal(base.q_z(1, x), deep.q_z(1, x))
        deep.enc_z[0].res2_0.body[-1].weight.normal_()  # trained blocks do change the encoding
        assert not torch.equal(base.q_z(1, x), deep.q_z(1, x))
    decoder_side = {k for k in deep.state_dict() if not k.startswith(("enc_u.", "enc_z."))}
    assert decoder_side == {k for k in base.state_dict() if not k.startswith(("enc_u.", "enc_z."))}
