"""The model family: shapes, finite ELBO terms, gradients, training, flow, DMoL, checkpoints, DDP."""

import json
import math
import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from PIL import Image

from selfcodec.entropy.dmol import DMoL
from selfcodec.nn import transforms
from selfcodec.model.checkpoint import load_model, read_metadata, save_model
from selfcodec.model.base import bpd, loss_from_terms
from selfcodec.model.registry import PRESETS, build_model, make_config
from selfcodec.nn.flows import RealNVP
from selfcodec.nn.blocks import data_dependent_init
from selfcodec.train.loop import TrainArgs, train

TINY = dict(ch=16, growth=8, block_convs=1, mixtures=3, z_ch=8, u_ch=4, flow_hidden=8, flow_blocks=1, latent_down=2)


def tiny(name, seed=0, **kw):
    torch.manual_seed(seed)
    m = build_model(make_config(name, **{**TINY, **kw}))
    data_dependent_init(m, torch.randint(0, 256, (2, 3, 2 * m.multiple, 2 * m.multiple)).float())
    return m


@pytest.mark.parametrize("name", list(PRESETS))
@pytest.mark.parametrize("posterior", ["uniform", "gaussian"])
def test_shapes_and_finite_terms_at_odd_sizes(name, posterior):
    m = tiny(name, posterior=posterior)
    h, w = 3 * m.multiple, 5 * m.multiple  # non-square, odd multiples
    x = torch.randint(0, 256, (2, 3, h, w)).float()
    imgs = m.images(x)
    assert imgs[-1].shape == x.shape and len(imgs) == m.cfg.scales + 1
    for k in range(1, len(imgs)):
        assert imgs[k - 1].shape[-1] * m.ratio == imgs[k].shape[-1]
    terms = m(x)
    for key in ("re_x", "re_y", "kl_u", "kl_z", "nelbo", "log_w"):
        assert terms[key].shape == (2,) and torch.isfinite(terms[key]).all(), key
    u = m.q_u(imgs[0])
    assert u.shape[-2:] == (imgs[0].shape[-2] >> m.cfg.latent_down, imgs[0].shape[-1] >> m.cfg.latent_down)
    assert m.p_img0(u.chunk(2, 1)[0] if posterior == "gaussian" else u).shape[-2:] == imgs[0].shape[-2:]


@pytest.mark.parametrize("name", ["selfvae-downscale", "selfvae-downscale-3l", "vae"])
def test_gradients_reach_every_module(name):
    m = tiny(name)
    x = torch.randint(0, 256, (2, 3, 2 * m.multiple, 2 * m.multiple)).float()
    # One step first: zero-initialised flow outputs make some gradients exactly zero at step 0.
    opt = torch.optim.Adamax(m.parameters(), 1e-2)
    for _ in range(2):
        opt.zero_grad()
        loss_from_terms(m(x), x[0].numel()).backward()
        opt.step()
    for pname, p in m.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
    for mname, mod in m.named_modules():
        own = list(mod.parameters(recurse=False))
        if own:
            assert any(p.grad.abs().sum() > 0 for p in own), f"no gradient reaches {mname}"


def test_short_training_lowers_the_loss(tmp_path):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:48, 0:48]
    for i in range(6):  # smooth synthetic images: learnable structure
        img = np.stack([(xx * (i + 1) * 3) % 256, (yy * 4 + i * 20) % 256, ((xx + yy) * 2) % 256], -1)
        img = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(tmp_path / f"{i}.png")
    run = tmp_path / "run"
    args = TrainArgs(model="selfvae-downscale", data=[str(tmp_path)], run_dir=str(run), steps=60, batch=4, crop=32,
                     lr=3e-3, warmup=5, log_every=10, compile=False, progress=False, overrides=TINY, threads=1)
    train(args)
    rows = (run / "log.csv").read_text().splitlines()
    first, last = float(rows[1].split(",")[4]), float(rows[-1].split(",")[4])
    assert last < first - 0.3, (first, last)
    # --resume continues from the checkpoint instead of starting over
    args.steps = 70
    args.resume = True
    with open(run / "log.csv", "a") as f:  # rows a stopped run logged after its last checkpoint
        f.write(rows[-1].replace("60,", "65,", 1) + "\n")
    assert train(args)["step"] == 70
    steps = [float(r.split(",")[0]) for r in (run / "log.csv").read_text().splitlines()[1:]]
    assert steps[-2:] == [60, 70], steps  # the orphan row gone, the resumed run logged after it


def test_realnvp_inverts_and_its_logdet_is_the_jacobian():
    torch.manual_seed(0)
    flow = RealNVP(4, hidden=8, blocks=1)
    with torch.no_grad():
        for layer in flow.layers:  # leave the identity initialisation
            layer.out.weight.normal_(0, 0.3)
            layer.out.bias.normal_(0, 0.3)
            layer.log_scale_factor.fill_(0.5)
    v = torch.randn(1, 4, 3, 2, dtype=torch.float64)
    flow = flow.double()
    u, logdet = flow(v)
    back, inv_logdet = flow.inverse(u)
    assert torch.allclose(back, v, atol=1e-10)
    assert torch.allclose(inv_logdet, -logdet, atol=1e-10)
    jac = torch.autograd.functional.jacobian(lambda t: flow(t.view_as(v))[0].flatten(), v.flatten())
    assert torch.allclose(torch.linalg.slogdet(jac)[1], logdet[0], atol=1e-8)
    assert not torch.allclose(u, v)


@pytest.mark.parametrize("c", [1, 3])
def test_dmol_sums_to_one_over_all_values(c):
    torch.manual_seed(1)
    k = 3
    params = torch.randn(1, DMoL.channels(c, k), 1, 1) * 2
    if c == 1:
        v = torch.arange(256.0).view(1, 1, 16, 16)
        lp = DMoL.log_prob_pixels(v, params.expand(1, -1, 16, 16).contiguous(), k)
        assert abs(float(torch.logsumexp(lp.double().flatten(), 0).exp()) - 1) < 1e-5
        return
    gb = torch.stack(torch.meshgrid(torch.arange(256.0), torch.arange(256.0), indexing="ij"))
    p = params.expand(1, -1, 256, 256).contiguous()
    total = 0.0
    for r in range(256):
        v = torch.cat([torch.full((1, 1, 256, 256), float(r)), gb[None]], 1)
        total += float(DMoL.log_prob_pixels(v, p, k).double().exp().sum())
    assert abs(total - 1) < 1e-4


def test_last_pixel_given_y_is_a_distribution_and_sharper():
    """Over the (at most 4^3) last pixels that keep a 2x2 block's rounded mean, P(x | y) of
    the three known pixels times the last one's renormalized mixture sums to P(three pixels)."""
    torch.manual_seed(2)
    k = 3
    params = torch.randn(1, DMoL.channels(3, k), 2, 2) * 1.5
    first = torch.tensor([[[10.0, 200.0], [37.0, 0.0]], [[128.0, 129.0], [131.0, 0.0]],
                          [[255.0, 254.0], [255.0, 0.0]]])[None]  # last pixel (1, 1) varies
    y = torch.tensor([[[[70.0]], [[129.0]], [[254.0]]]])  # 4 values each: 31-34, 126-129, 250-253
    lo, hi = (t.flatten().long().tolist() for t in DMoL.block_mean_range(first, y))
    grids = torch.meshgrid(*[torch.arange(a, b + 1).float() for a, b in zip(lo, hi)], indexing="ij")
    total = 0.0
    for last in torch.stack([g.flatten() for g in grids], 1):
        v = first.clone()
        v[0, :, 1, 1] = last
        assert torch.equal(transforms.downscale(v), y)
        lp_y = DMoL.log_prob_given_y(v, params, k)
        assert float(lp_y) > float(DMoL.log_prob(v, params, k))  # sharper than the plain DMoL
        total += float(lp_y.double().exp())
    three = DMoL.log_prob_pixels(first, params, k)[0].flatten()[:3].sum()
    assert abs(total / float(three.double().exp()) - 1) < 1e-4


def test_train_set_parses_booleans_numbers_and_names():
    import selfcodec.cli.main as cli_main
    from selfcodec.cli.model_cmds import parse_overrides

    assert parse_overrides(["y_consistent=false", "refine=2", "posterior=gaussian", "x=-0.5", "b=True"]) == \
        {"y_consistent": False, "refine": 2, "posterior": "gaussian", "x": -0.5, "b": True}


def test_y_consistent_needs_the_downscale_transform():
    with pytest.raises(ValueError, match="downscale"):
        build_model(make_config("selfvae-sketch", y_consistent=True, **TINY))
    m = tiny("selfvae-downscale", y_consistent=True)
    terms = m(torch.randint(0, 256, (2, 3, 16, 16)).float())
    assert torch.isfinite(terms["nelbo"]).all()


@pytest.mark.parametrize("name", ["selfvae-downscale", "selfvae-downscale-3l"])
def test_staged_pixels_see_only_earlier_stages(name):
    """x_context: a pixel's parameters depend on the pixels of earlier stages and on nothing of
    its own stage or later ones (else the decoder could not rebuild them): a proper
    autoregressive distribution, so the ELBO stays a bound."""
    m = tiny(name, x_context=1, y_consistent=True).eval()
    x = torch.randint(0, 256, (1, 3, 16, 16)).float()
    k = m.cfg.scales
    imgs = m.images(x)
    with torch.no_grad():
        params, h = m.p_img(k, torch.zeros(1, m.cfg.z_ch, 4, 4), imgs[k - 1], features=True)
        _assert_stages_see_only_earlier(m, k, params, h, imgs[k], imgs[k - 1])


def _assert_stages_see_only_earlier(m, k, params, h, img, img_prev):
    """images[k]'s staged parameters change (the context nets do something), and each stage's
    stay the same when the pixels of that stage and later ones are replaced by noise."""
    from selfcodec.model.base import stage_mask

    hh, ww = img.shape[-2:]
    full = m.x_params(k, params, h, img, img_prev)
    assert not torch.equal(full, params)
    for stage in (0, 1, 2):
        later = ~stage_mask(stage, hh, ww, before=True)  # this stage and the ones after it
        other = torch.where(later, torch.randint(0, 256, img.shape).float(), img)
        sel = stage_mask(stage, hh, ww)
        again = m.x_params(k, params, h, other, img_prev)
        assert torch.equal(torch.where(sel, again, 0), torch.where(sel, full, 0)), stage


@pytest.mark.parametrize("name", ["selfvae-downscale", "vae"])
def test_staged_coarsest_image_sees_only_earlier_stages(name):
    """y_context: the same for images[0] (y, or x itself for the VAE), given u."""
    m = tiny(name, y_context=1).eval()
    img0 = m.images(torch.randint(0, 256, (1, 3, 16, 16)).float())[0]
    s = img0.shape[-1]
    with torch.no_grad():
        params, h = m.p_img0(torch.randn(1, m.cfg.u_ch, s // 4, s // 4), features=True)
        for p in m.context0.parameters():  # as if trained: the fresh nets add nothing
            p.add_(0.1 * torch.randn_like(p))
        _assert_stages_see_only_earlier(m, 0, params, h, img0, None)


def test_context_nets_start_adding_nothing():
    """A model gaining x_context (train --init ... --set x_context=1) starts at the same ELBO."""
    plain = tiny("selfvae-downscale", y_consistent=True).eval()
    staged = build_model(make_config("selfvae-downscale", **TINY, y_consistent=True, x_context=1, y_context=1)).eval()
    missing, unexpected = staged.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and {n.split(".")[0] for n in missing} == {"context", "context0"}
    x = torch.randint(0, 256, (2, 3, 16, 16)).float()
    with torch.no_grad():
        assert torch.allclose(plain(x, sample=False)["nelbo"], staged(x, sample=False)["nelbo"])
    with pytest.raises(ValueError, match="x_context"):
        build_model(make_config("vae", **TINY, x_context=1))


def test_checkpoint_saves_and_loads_exactly(tmp_path):
    m = tiny("selfvae-downscale")
    path = tmp_path / "m.safetensors"
    save_model(m, path)
    m2 = load_model(path)
    for (k, a), (_, b) in zip(m.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), k
    assert m2.cfg == m.cfg
    x = torch.randint(0, 256, (1, 3, 16, 16)).float()
    torch.manual_seed(3)
    a = m.eval()(x, sample=False)["nelbo"]
    torch.manual_seed(3)
    assert torch.equal(a, m2(x, sample=False)["nelbo"])


def _ddp_worker(rank, world, port, data, run):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), SELFCODEC_DDP_BACKEND="gloo")
    torch.set_num_threads(1)
    train(TrainArgs(model="selfvae-downscale", data=[data], run_dir=run, steps=2, batch=2, crop=16, warmup=1,
                    compile=False, progress=False, overrides=TINY, log_every=1))
    torch.distributed.destroy_process_group()


def test_two_process_gloo_ddp_step(tmp_path):
    for i in range(2):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = tmp_path / "run"
    mp.spawn(_ddp_worker, args=(2, port, str(tmp_path), str(run)), nprocs=2, join=True)
    assert (run / "ckpt.safetensors").exists()
    assert len((run / "log.csv").read_text().splitlines()) == 3


def test_training_stops_at_its_time_limit_with_a_checkpoint(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(tmp_path / "0.png")
    run = tmp_path / "run"
    res = train(TrainArgs(model="selfvae-downscale", data=[str(tmp_path)], run_dir=str(run), steps=1000, batch=2,
                          crop=16, warmup=1, compile=False, progress=False, overrides=TINY, threads=1, minutes=0.0))
    assert res["step"] == 1  # the limit is checked after each step
    assert int(read_metadata(run / "ckpt.safetensors")["step"]) == 1


def test_bpd_terms_add_up():
    m = tiny("selfvae-downscale")
    x = torch.randint(0, 256, (2, 3, 16, 16)).float()
    t = bpd(m(x), x[0].numel())
    assert math.isclose(t["nelbo"], t["re_x"] + t["re_y"] + t["kl_u"] + t["kl_z"], rel_tol=1e-5)


def test_eval_bpd_iw_bound_is_tighter_than_elbo_and_cli_tools_work(tmp_path):
    from click.testing import CliRunner

    import selfcodec.cli.main as cli_main
    from selfcodec.train.evaluate import eval_bpd

    m = tiny("selfvae-downscale", posterior="gaussian").eval()
    imgs = [np.random.default_rng(i).integers(0, 256, (19, 21, 3), dtype=np.uint8) for i in range(3)]
    torch.manual_seed(0)
    res = eval_bpd(m, imgs, iw=8)
    assert res["images"] == 3 and np.isfinite(res["iw_nll"]) and np.isfinite(res["nelbo"])
    assert res["iw_nll"] <= res["nelbo"] + 0.05  # log-mean-exp of weights bounds at least as tight (up to MC noise)
    # export / plot-log / eval-bpd from the command line on a short run
    for i, a in enumerate(imgs):
        Image.fromarray(a).save(tmp_path / f"{i}.png")
    run = tmp_path / "run"
    train(TrainArgs(model="selfvae-downscale", data=[str(tmp_path)], run_dir=str(run), steps=4, batch=2, crop=16,
                    warmup=1, log_every=1, compile=False, progress=False, overrides=TINY, threads=1))
    main = cli_main.main
    r = CliRunner().invoke(main, ["export", str(run), "-o", str(tmp_path / "m.safetensors")])
    assert r.exit_code == 0, r.output
    assert load_model(tmp_path / "m.safetensors").cfg.ch == TINY["ch"]
    r = CliRunner().invoke(main, ["plot-log", str(run / "log.csv"), "-o", str(tmp_path / "c.png")])
    assert r.exit_code == 0 and Image.open(tmp_path / "c.png").size[0] > 100
    out = tmp_path / "bpd.json"
    r = CliRunner().invoke(main, ["eval-bpd", "--model", str(run), "--data", str(tmp_path), "--iw", "2", "--json", str(out)])
    assert r.exit_code == 0 and "IW NLL (2 samples)" in r.output, r.output
    rec = json.loads(out.read_text())
    assert rec["iw_samples"] == 2 and f"{rec['nelbo']:.4f} bpd" in r.output and f"over {rec['images']} images" in r.output
    assert rec["command"].startswith("selfcodec ") and rec["versions"]["torch"]  # provenance.stamp, as the benchmarks record it


def test_warm_start_copies_fitting_tensors_and_fills_a_missing_level(tmp_path):
    from selfcodec.train.loop import warm_start

    two = tiny("selfvae-downscale", seed=1)
    save_model(two, tmp_path / "two.safetensors")
    src = load_model(tmp_path / "two.safetensors").state_dict()
    three = tiny("selfvae-downscale-3l", seed=2)
    copied, total = warm_start(three, tmp_path / "two.safetensors")
    assert 0 < copied < total  # z_2's prior takes z_1 (not u) as input: that layer cannot come over
    st = three.state_dict()
    assert torch.equal(st["flow.layers.0.net.0.v"], src["flow.layers.0.net.0.v"])
    level1 = [k for k in src if k.startswith("dec_body.0.")]
    for k in level1:  # the finer level without a source level takes the source's finest level
        assert torch.equal(st[k.replace("dec_body.0.", "dec_body.1.")], src[k])
    vae = tiny("vae", seed=3)
    assert warm_start(vae, tmp_path / "two.safetensors") == (len(vae.state_dict()),) * 2  # u level fits whole


def test_free_bits_keep_a_small_kl_out_of_the_loss_gradient():
    m = tiny("selfvae-downscale")
    x = torch.randint(0, 256, (2, 3, 16, 16)).float()
    terms = {k: v.detach() for k, v in m(x).items()}
    dims = x[0].numel()
    plain_elbo = (terms["nelbo"] + terms["u_code"]).mean() / (dims * math.log(2))
    assert torch.allclose(loss_from_terms(terms, dims, free_bits=0.0), plain_elbo)
    kl = float(terms["kl_z1"].mean()) / (dims * math.log(2))
    for fb, grad_expected in ((kl * 2, False), (kl / 2, True)):
        z = terms["kl_z1"].detach().requires_grad_()
        loss_from_terms({**terms, "kl_z1": z}, dims, free_bits=fb).backward()
        assert (z.grad.abs().sum() > 0) == grad_expected


@pytest.mark.parametrize("name,posterior", [("selfvae-downscale-3l", "uniform"), ("selfvae-downscale", "gaussian")])
def test_scale_z_keeps_every_mean_and_scales_z(name, posterior):
    from selfcodec.model.densenet import scale_z

    m = tiny(name, posterior=posterior).eval()
    x = torch.randint(0, 256, (1, 3, 2 * m.multiple, 2 * m.multiple)).float()
    imgs = m.images(x)
    u = torch.round(m.q_u(imgs[0])[:, : m.cfg.u_ch]).detach()

    def chain(model, gain):
        out, prev = [], u
        for k in range(1, m.cfg.scales + 1):
            q = model.q_z(k, imgs[k])[:, : m.cfg.z_ch]
            pm, pls = model.p_z(k, imgs[k - 1], prev)
            out += [q / gain, pm / gain, pls - math.log(gain), model.p_img(k, q, imgs[k - 1])]
            prev = q  # the next level's prior reads z as the model now scales it
        return out

    with torch.no_grad():
        before = chain(m, 1.0)
        scale_z(m, 10.0)
        after = chain(m, 10.0)
    for a, b in zip(before, after):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4)


def test_configurations_under_earlier_field_names_still_load():
    """K was `levels` (a word the codec's quality levels use) and a dense block's convolutions
    `layers` (a word layered files use): model files written before the rename keep loading."""
    from selfcodec.model.base import Config
    from selfcodec import zoo

    cfg = Config.from_json('{"levels": 2, "layers": 3, "ch": 8}')
    assert (cfg.scales, cfg.block_convs, cfg.ch) == (2, 3, 8)
    assert make_config("selfvae-downscale", levels=2).scales == 2
    assert zoo.load("selfvae-downscale-3l")[0].cfg.scales == 2  # a shipped file with the earlier names
