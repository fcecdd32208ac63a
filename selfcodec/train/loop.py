"""Training: random crops, AdaMax with warm-up and cosine decay, EMA weights, bf16 autocast
with channels_last on CPU, CUDA, DDP through torchrun, resumable checkpoints and a CSV log of
the loss terms in bits per dimension."""

import csv
import io
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from . import data as datamod
from ..model.checkpoint import atomic_save, load_model, load_tensors, read_config, read_metadata, save_model
from ..fileio import atomic_write
from ..model.densenet import scale_z
from ..model.base import Config, SelfVAE, bpd, loss_from_terms, rd_loss
from ..model.registry import build_model, make_config
from ..model.narrow import narrow_state
from ..nn.blocks import data_dependent_init

LOG_FIELDS = ["step", "seconds", "lr", "loss", "nelbo", "re_x", "re_y", "kl_u", "kl_z", "u_code", "img_per_s"]


def rd_fields(n_levels: int) -> list:
    """Log columns of a rate-distortion run: images' code lengths in bpd, then per level (0-based)
    the rates in bits per pixel and the PSNR of rec2."""
    per_level = [f"{t}_l{i}" for i in range(n_levels) for t in ("bpp_u", "bpp_z", "psnr")]
    return ["step", "seconds", "lr", "loss", "re_x", "re_y", "flow_u"] + per_level + ["img_per_s"]


@dataclass
class TrainArgs:
    model: str = "selfvae-downscale"
    data: list = field(default_factory=lambda: ["bsds500"])
    run_dir: str = "runs/default"
    steps: int = 100000
    batch: int = 16
    crop: int = 128
    lr: float = 2e-3
    warmup: int = 200
    kl_warmup: int = 0  # steps of linear beta warm-up from 0.1 to 1
    ema: float = 0.999
    clip: float = 50.0
    device: str = "cpu"
    bf16: bool | None = None  # default: on for CPU
    threads: int | None = None
    ckpt_minutes: float = 5.0
    minutes: float | None = None  # stop (with a checkpoint) after this much wall time, whatever the steps
    log_every: int = 20
    resume: bool = False
    seed: int = 0
    overrides: dict = field(default_factory=dict)  # Config fields (width, posterior, ...)
    progress: bool = True
    init: str | None = None  # start a new run from a model file's weights (and its config)
    compile: bool = True  # torch.compile the DMoL likelihood (2x faster on CPU)
    warm_start: str | None = None  # copy the tensors of a model file that fit this model (any preset)
    warm_start_only: tuple = ()  # module names (enc_u, dec_0, ...): warm-start only these, the rest stays fresh
    free_bits: float = 0.0  # KL floor per z level, bits per dimension of x (see loss_from_terms)
    z_gain: float = 1.0  # new runs (not resumed): reparametrise z as z_gain * z once (see family.scale_z)
    nll_weight: float = 0.01  # rate-distortion runs: weight of the images' code lengths (see family.rd_loss)
    train_only: tuple = ()  # module names (e.g. refine_net): only these learn, the rest stays as loaded
    quant: str = "noise"  # rate-distortion runs: noise, round (as the codec; frozen encoders) or mixed (see rd_forward)
    freeze: tuple = ()  # module names (e.g. flow): these stay as loaded, the rest learns
    y_weight: float = 0.0  # rate-distortion runs: weight of ŷ's MSE beside x̂'s (see family.rd_loss)
    cgen_weight: float = 0.0  # rate-distortion runs: weight of cgen's x̂ MSE, on a quarter of each batch
    by_area: bool = False  # pick training images in proportion to their pixels (see data.RandomCrops)
    # rate-distortion models: minimise the lossless file's code length instead (family.lossless_forward;
    # with --train-only context,context0 only the pixel context nets learn, and the lossy modes stay as they are)
    lossless: bool = False


def lr_at(step: int, a: TrainArgs) -> float:
    if step < a.warmup:
        return a.lr * (step + 1) / a.warmup
    t = min(1.0, (step - a.warmup) / max(1, a.steps - a.warmup))
    return a.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def beta_at(step: int, a: TrainArgs) -> float:
    return 1.0 if step >= a.kl_warmup else 0.1 + 0.9 * step / a.kl_warmup


def _ddp():
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and os.environ.get("SELFCODEC_DDP_BACKEND") != "gloo" else "gloo"
        dist.init_process_group(backend)
    rank = dist.get_rank() if dist.is_initialized() else 0
    return rank, world


def _any_rank(flag: bool, world: int, device) -> bool:
    """Whether flag holds on any process (all of them stop at the same step under DDP)."""
    if world == 1:
        return flag
    t = torch.tensor([int(flag)], device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return bool(t.item())


def warm_start(model: SelfVAE, path: Path, only: tuple = ()) -> tuple:
    """Copy each tensor of a model file whose name and shape fit `model`; a z level the file
    lacks takes the file's finest level (e.g. a 3-level model from a 2-level one). With `only`,
    just the tensors of those top-level modules (e.g. the u path of an ELBO model whose z
    collapsed, so z starts fresh). The rest keeps its data-dependent init.
    Returns (tensors copied, tensors in model)."""
    src = load_tensors(path)
    if only:
        src = {k: v for k, v in src.items() if k.split(".")[0] in only}
    lists = model.LEVEL_LISTS  # the family's module lists indexed by level
    src_levels = 1 + max((int(k.split(".")[1]) for k in src if k.split(".")[0] in lists), default=-1)
    state, copied = model.state_dict(), 0
    for name, t in state.items():
        parts = name.split(".")
        cand = src.get(name)
        if cand is None and parts[0] in lists and src_levels:
            cand = src.get(".".join([parts[0], str(src_levels - 1)] + parts[2:]))
        if cand is not None and cand.shape == t.shape:
            t.copy_(cand.to(t.dtype))
            copied += 1
    return copied, len(state)


def rd_log_terms(terms: dict, lv: torch.Tensor, n_levels: int, pixels: int) -> dict:
    """Per level present in the batch: bits per pixel of û and ẑ and the PSNR of x̂; the images'
    code lengths in bits per dimension."""
    ln2, out = math.log(2), {}
    t = {k: v.detach().float() for k, v in terms.items()}
    for k in ("re_x", "re_y", "flow_u"):
        out[k] = float(t[k].mean()) / (3 * pixels * ln2)
    for i in range(n_levels):
        m = lv == i
        if m.any():  # (no PSNR for lossless training's exact images)
            out[f"bpp_u_l{i}"] = float(t["rate_u"][m].mean()) / (pixels * ln2)
            out[f"bpp_z_l{i}"] = float(t["rate_z"][m].mean()) / (pixels * ln2)
            if bool((t["sse"][m] > 0).all()):
                out[f"psnr_l{i}"] = float((10 * torch.log10(255.0 ** 2 / (t["sse"][m] / (3 * pixels)))).mean())
    return out


def lossless_loss(terms: dict, pixels: int) -> torch.Tensor:
    """The lossless file's code length, bits per pixel, averaged over the batch."""
    bits = terms["rate_u"] + terms["rate_z"] + terms["re_x"] + terms["re_y"]
    return bits.mean() / (pixels * math.log(2))


def trim_log(log_path: Path, last_step: int) -> None:
    """Drop the log's rows past the checkpoint a run resumes from: their steps are trained again,
    and left in place they would appear twice (with a jump back in time) in the curve and the card."""
    if not log_path.exists():
        return
    with open(log_path, newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) < 2:
        return
    kept = [rows[0]] + [r for r in rows[1:] if r and float(r[0]) <= last_step]
    if len(kept) < len(rows):
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(kept)
        atomic_write(log_path, out.getvalue().encode())


def save_checkpoint(run: Path, model, ema: dict, opt, step: int, seconds: float):
    tensors = {f"model.{k}": v.detach().cpu() for k, v in model.state_dict().items()}
    tensors.update({f"ema.{k}": v.detach().cpu() for k, v in ema.items()})
    meta = {"config": model.cfg.to_json(), "step": str(step), "seconds": f"{seconds:.1f}"}
    atomic_save(tensors, run / "ckpt.safetensors", meta)
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    atomic_write(run / "optim.pt", buf.getvalue())


def ema_model(run: Path, prefix: str = "ema.") -> SelfVAE:
    """The EMA weights (or with prefix "model.", the live ones) of a training run, in eval mode."""
    return load_model(run / "ckpt.safetensors", prefix)


def train(a: TrainArgs) -> dict:
    rank, world = _ddp()
    device = torch.device(a.device)
    if a.device.startswith("cuda") and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if a.threads:
        torch.set_num_threads(a.threads)
    bf16 = a.bf16 if a.bf16 is not None else device.type == "cpu"
    torch.manual_seed(a.seed + rank)
    run = Path(a.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    resuming = a.resume and (run / "ckpt.safetensors").exists()

    if resuming:
        meta = read_metadata(run / "ckpt.safetensors")
        cfg = Config.from_json(meta["config"])
        step, seconds = int(meta["step"]), float(meta["seconds"])
    elif a.init:
        cfg, step, seconds = Config.of(**{**vars(read_config(Path(a.init))), **a.overrides}), 0, 0.0
    else:
        cfg, step, seconds = make_config(a.model, **a.overrides), 0, 0.0
    if a.lossless and not cfg.rd_lambdas:  # (an ELBO run already minimises the images' code lengths)
        raise ValueError("--lossless trains a rate-distortion model's lossless code length; this model has no levels")
    model = build_model(cfg).to(device)
    if a.compile:
        from ..entropy.dmol import DMoL

        model.dmol_log_prob = torch.compile(DMoL.log_prob, dynamic=False)
        model.dmol_mean = torch.compile(DMoL.mean, dynamic=False)
    images = []
    for spec in a.data:
        images += datamod.resolve(spec)
    crops = datamod.RandomCrops(images, a.crop, seed=a.seed * 1000 + rank + step, by_area=a.by_area)
    dims = 3 * a.crop * a.crop
    # channels_last pays with bf16; in fp32 on this CPU the default layout was faster (1.67 vs 1.88 s a step)
    layout = torch.channels_last if bf16 else torch.contiguous_format

    def batch():
        return torch.from_numpy(crops.batch(a.batch)).to(device).float().contiguous(memory_format=layout)

    if resuming:
        model.load_state_dict(load_tensors(run / "ckpt.safetensors", "model."))
    elif a.init:  # (strict=False: an ELBO model may start a rate-distortion run, whose steps it lacks)
        src = {k: v.float() for k, v in load_tensors(Path(a.init)).items()}
        own = model.state_dict()
        if any(k in own and own[k].shape != t.shape for k, t in src.items()):  # --set narrower widths
            src = narrow_state(src, model)
            if rank == 0:
                print(f"reshaped {a.init}'s layers to this model's (narrower widths keep their first channels, larger kernels start as the smaller one at the centre)", flush=True)
        missing, unexpected = model.load_state_dict(src, strict=False)
        # (and a model gaining a refine filter, context nets or a hyperprior starts them fresh: they begin adding nothing)
        fresh = ("refine_net.", "refine_half_net.", "context.", "context0.", "hyper_a.", "hyper_s.", "v_code_", "u_context.", "z_context.")
        fresh_anywhere = ".res"  # an encoder's residual blocks (enc_res)
        if unexpected or {m for m in missing if not m.startswith(fresh) and fresh_anywhere not in m} - {"rd_log2_step", "v_log2_step"}:
            raise ValueError(f"{a.init} does not fit this model: missing {missing}, unexpected {unexpected}")
    else:
        data_dependent_init(model, batch())
        if a.warm_start:
            copied, total = warm_start(model, Path(a.warm_start), tuple(a.warm_start_only))
            if rank == 0:
                print(f"warm start: {copied} of {total} tensors from {a.warm_start}", flush=True)
    if a.z_gain != 1.0 and not resuming:
        scale_z(model, a.z_gain)
    model = model.to(memory_format=layout)
    if a.train_only:
        unknown = set(a.train_only) - {n.split(".")[0] for n, _ in model.named_parameters()}
        if unknown:  # a misspelt name would otherwise freeze everything and train nothing
            raise ValueError(f"--train-only: no module named {', '.join(sorted(unknown))} in {cfg.name}")
        for n, p in model.named_parameters():
            p.requires_grad_(n.split(".")[0] in a.train_only)
    if a.freeze:
        unknown = set(a.freeze) - {n.split(".")[0] for n, _ in model.named_parameters()}
        if unknown:
            raise ValueError(f"--freeze: no module named {', '.join(sorted(unknown))} in {cfg.name}")
        for n, p in model.named_parameters():
            if n.split(".")[0] in a.freeze:
                p.requires_grad_(False)
    ema = {k: v.detach().clone().float() for k, v in model.state_dict().items()}
    if resuming:
        ema = {k: v.to(device) for k, v in load_tensors(run / "ckpt.safetensors", "ema.").items()}
    # The learned steps move 10x faster: at the base rate a step would take ~1000 updates to halve.
    step_tables = ("rd_log2_step", "v_log2_step")
    fast = [p for n, p in model.named_parameters() if n in step_tables and p.requires_grad]
    rest = [p for n, p in model.named_parameters() if n not in step_tables and p.requires_grad]
    opt = torch.optim.Adamax([{"params": rest, "lr_mult": 1.0}, {"params": fast, "lr_mult": 10.0}], lr=a.lr,
                             foreach=True)
    if resuming and (run / "optim.pt").exists():
        opt.load_state_dict(torch.load(run / "optim.pt", weights_only=True))
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    rd = bool(cfg.rd_lambdas)
    lambdas = torch.tensor(cfg.rd_lambdas, dtype=torch.float32, device=device)
    n_levels = len(cfg.rd_lambdas)
    pixels = a.crop * a.crop
    log_fields = rd_fields(n_levels) if rd else LOG_FIELDS
    log_path = run / "log.csv"
    if resuming and rank == 0:
        trim_log(log_path, step)
    new_log = not log_path.exists()
    log_file = open(log_path, "a", newline="") if rank == 0 else None
    writer = csv.DictWriter(log_file, log_fields) if log_file else None
    if writer and new_log:
        writer.writeheader()
    bar = None
    if rank == 0 and a.progress:
        from tqdm import tqdm

        bar = tqdm(total=a.steps, initial=step, dynamic_ncols=True, mininterval=2.0)
    last_ckpt, t0, sums, cnts, n_sum, t_log = time.time(), time.time(), {}, {}, 0, time.time()
    deadline = t0 + a.minutes * 60 if a.minutes is not None else None
    last = {}
    while step < a.steps:
        for gr in opt.param_groups:
            gr["lr"] = lr_at(step, a) * gr.get("lr_mult", 1.0)
        x = batch()
        if rd:  # every image of the batch at its own random level
            lv = torch.randint(0, n_levels, (x.shape[0],), device=device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                terms = (model.lossless_forward(x, lv) if a.lossless else
                         net(x, level_idx=lv, quant=a.quant, cgen=len(x) // 4 if a.cgen_weight else 0))  # via DDP's forward
            loss = (lossless_loss(terms, pixels) if a.lossless else
                    rd_loss(terms, lambdas[lv], pixels, a.nll_weight, a.y_weight, a.cgen_weight))
        else:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                terms = net(x)
            loss = loss_from_terms(terms, dims, beta_at(step, a), a.free_bits)
        opt.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at step {step}; lower --lr or resume from the last checkpoint")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip)
        opt.step()
        decay = min(a.ema, (1 + step) / (10 + step))  # warm-up: early EMA must not cling to the init
        with torch.no_grad():
            state = model.state_dict()
            floats = [k for k, v in state.items() if v.is_floating_point()]
            # one fused update for every float tensor (a loop of ~200 small ops cost ~5 % of a fast model's step)
            torch._foreach_lerp_([ema[k] for k in floats], [state[k].float() for k in floats], 1 - decay)
            for k, v in state.items():
                if not v.is_floating_point():
                    ema[k].copy_(v)
        step += 1
        terms_bpd = rd_log_terms(terms, lv, n_levels, pixels) if rd else bpd(terms, dims)
        terms_bpd["loss"] = float(loss.detach())
        for k, v in terms_bpd.items():
            sums[k] = sums.get(k, 0.0) + v
            cnts[k] = cnts.get(k, 0) + 1
        n_sum += 1
        if bar:
            bar.update(1)
            shown = ("loss", "re_x", "re_y") if rd else ("nelbo", "re_x", "re_y", "kl_u", "kl_z")
            bar.set_postfix({k: f"{terms_bpd[k]:.3f}" for k in shown})
        if step % a.log_every == 0 or step == a.steps:
            now = time.time()
            seconds += now - t_log
            last = {k: v / cnts[k] for k, v in sums.items()}
            row = {k: round(last.get(k, 0.0), 5) for k in log_fields if k in last}
            row.update(step=step, seconds=round(seconds, 1), lr=lr_at(step, a),
                       img_per_s=round(n_sum * a.batch * world / (now - t_log), 3))
            if writer:
                writer.writerow(row)
                log_file.flush()
            sums, cnts, n_sum, t_log = {}, {}, 0, now
        out_of_time = deadline is not None and _any_rank(time.time() >= deadline, world, device)
        if rank == 0 and (time.time() - last_ckpt > a.ckpt_minutes * 60 or step == a.steps or out_of_time):
            save_checkpoint(run, model, ema, opt, step, seconds)
            last_ckpt = time.time()
        if out_of_time:
            break
    if bar:
        bar.close()
    if log_file:
        log_file.close()
    return {"step": step, "seconds": seconds, **last}


STORED_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}  # a model file's weights


def export(run: Path, out: Path, dtype: str = "bf16", weights: str = "ema") -> Path:
    """Ship a run's EMA (or live) weights as a small safetensors model file."""
    meta = read_metadata(Path(run) / "ckpt.safetensors")
    model = ema_model(Path(run), "ema." if weights == "ema" else "model.")
    info = {"step": int(meta["step"]), "train_seconds": float(meta["seconds"]), "weights": weights}
    save_model(model, out, STORED_DTYPES[dtype], info)
    return Path(out)


def plot_log(csv_path: Path, out: Path, title: str | None = None) -> Path:
    """Loss terms (bits per dimension) against steps, as a PNG; for a rate-distortion run, the
    rate (bits per pixel) and PSNR of each level beside the images' code lengths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    steps = np.array([float(r["step"]) for r in rows])

    def col(key):
        return np.array([float(r[key]) if r.get(key) not in (None, "") else np.nan for r in rows])

    rd = "psnr_l0" in rows[0] if rows else False
    fig, axes = plt.subplots(1, 3 if rd else 1, figsize=(15 if rd else 7, 4), squeeze=False)
    ax = axes[0, 0]
    for key in ("re_x", "re_y") if rd else ("nelbo", "re_x", "re_y", "kl_u", "kl_z"):
        vals = col(key)
        if np.isfinite(vals).any() and np.nanmax(np.abs(vals)) > 0:
            ax.plot(steps, vals, label=key)
    ax.set_ylabel("bits per dimension")
    ax.set_yscale("log")
    ax.set_title(title or str(csv_path), fontsize=9)
    if rd:
        levels = sorted({int(k.rsplit("_l", 1)[1]) for k in rows[0] if k.startswith("psnr_l")})
        for lv in levels:
            axes[0, 1].plot(steps, col(f"bpp_u_l{lv}") + col(f"bpp_z_l{lv}"), label=f"level {lv + 1}")
            axes[0, 2].plot(steps, col(f"psnr_l{lv}"), label=f"level {lv + 1}")
        axes[0, 1].set_ylabel("rate of û + ẑ, bits per pixel")
        axes[0, 2].set_ylabel("PSNR of x̂ (rec2 chain, training noise), dB")
    for a in axes[0]:
        a.set_xlabel("step")
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return Path(out)
