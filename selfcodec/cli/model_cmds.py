"""Commands around the models: train, eval-bpd, plot-log, export, demo."""

import json
from pathlib import Path

import click


@click.command()
@click.option("--model", "model_name", default="selfvae-downscale", show_default=True,
              help="vae, selfvae-downscale, selfvae-sketch or selfvae-downscale-3l.")
@click.option("--data", multiple=True, default=["bsds500"], show_default=True,
              help="A folder of images, cifar10, or a set under ../shared/data (repeatable).")
@click.option("--run-dir", default="runs/default", show_default=True, help="Checkpoints and log.csv go here.")
@click.option("--steps", default=100000, show_default=True)
@click.option("--batch", default=16, show_default=True)
@click.option("--crop", default=128, show_default=True, help="Random crop side (CIFAR: 32).")
@click.option("--lr", default=2e-3, show_default=True)
@click.option("--warmup", default=200, show_default=True)
@click.option("--kl-warmup", default=0, show_default=True, help="Steps of KL weight warm-up.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:1 ...")
@click.option("--bf16/--no-bf16", default=None, help="bf16 autocast (default: on for CPU).")
@click.option("--threads", type=int, default=None)
@click.option("--ckpt-minutes", default=5.0, show_default=True)
@click.option("--minutes", type=float, default=None,
              help="Stop after this many minutes of training, with a checkpoint (--resume goes on), whatever --steps says.")
@click.option("--resume", is_flag=True, help="Continue from RUN_DIR's checkpoint.")
@click.option("--init", default=None, help="Start from a model file's weights (e.g. a shipped model).")
@click.option("--warm-start", default=None,
              help="Copy the weights that fit from a model file of any preset (e.g. the 2-level model for the 3-level).")
@click.option("--warm-start-only", default="", metavar="MOD1,MOD2",
              help="With --warm-start: copy only these modules (e.g. enc_u,dec_0,flow,u_code_mean,u_code_log_scale).")
@click.option("--free-bits", default=0.0, show_default=True,
              help="KL floor per z level in bits per dimension: keeps z from collapsing to its prior.")
@click.option("--z-gain", default=1.0, show_default=True,
              help="New runs only: multiply z's scale once (means unchanged) to lift it above the posterior noise.")
@click.option("--rd-lambdas", default=None, metavar="L1,L2,...",
              help="Rate-distortion training: one lambda per quality level (loss = bpp + lambda * MSE of rec2).")
@click.option("--nll-weight", default=0.01, show_default=True,
              help="Rate-distortion runs: weight of the images' code lengths, which keep cgen/crec/lossless usable.")
@click.option("--train-only", default="", metavar="MOD1,MOD2",
              help="Only these top-level modules learn (e.g. refine_net); the rest stays as loaded.")
@click.option("--quant", type=click.Choice(["noise", "round", "mixed", "rdoq"]), default="noise", show_default=True,
              help="Rate-distortion runs: how latents stand in for rounding. round: as the codec does (for decoder-only "
                   "training); mixed: rates of noisy latents, decoders read rounded ones (every part learns); rdoq: "
                   "mixed, with the latents quantized as the codec's encoder does.")
@click.option("--hard-quant", is_flag=True, hidden=True, help="Same as --quant round (earlier runs' commands).")
@click.option("--freeze", default="", metavar="MOD1,MOD2", help="These top-level modules stay as loaded (e.g. flow).")
@click.option("--y-weight", default=0.0, show_default=True,
              help="Rate-distortion runs: weight of the MSE of ŷ (rec1's preview) beside x̂'s.")
@click.option("--cgen-weight", default=0.0, show_default=True,
              help="Rate-distortion runs: weight of the MSE of cgen's x̂ (on a quarter of each batch).")
@click.option("--by-area", is_flag=True, help="Pick training images in proportion to their pixels.")
@click.option("--lossless", is_flag=True,
              help="Rate-distortion models: minimise the lossless file's size (with --train-only context,context0: "
                   "only the pixel context nets learn).")
@click.option("--compile/--no-compile", default=True, show_default=True, help="torch.compile the likelihood.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Model config field, e.g. --set ch=64 --set posterior=gaussian.")
@click.option("--seed", default=0)
def train(model_name, data, run_dir, steps, batch, crop, lr, warmup, kl_warmup, device, bf16, threads,
          ckpt_minutes, minutes, resume, init, warm_start, warm_start_only, free_bits, z_gain, rd_lambdas, nll_weight, train_only, quant, hard_quant, freeze, y_weight, cgen_weight, by_area, lossless, compile, overrides, seed):
    """Train a model; `torchrun --nproc-per-node N -m selfcodec train ...` for DDP."""
    from selfcodec.train.loop import TrainArgs, train as run

    ov = parse_overrides(overrides)
    if rd_lambdas:
        ov["rd_lambdas"] = tuple(float(v) for v in rd_lambdas.split(","))
    res = run(TrainArgs(model=model_name, data=list(data), run_dir=run_dir, steps=steps, batch=batch, crop=crop,
                        lr=lr, warmup=warmup, kl_warmup=kl_warmup, device=device, bf16=bf16, threads=threads,
                        ckpt_minutes=ckpt_minutes, minutes=minutes, resume=resume, init=init, warm_start=warm_start,
                        warm_start_only=tuple(m for m in warm_start_only.split(",") if m),
                        free_bits=free_bits, z_gain=z_gain, nll_weight=nll_weight, compile=compile,
                        train_only=tuple(m for m in train_only.split(",") if m), quant="round" if hard_quant else quant,
                        freeze=tuple(m for m in freeze.split(",") if m), y_weight=y_weight, cgen_weight=cgen_weight,
                        by_area=by_area, lossless=lossless, overrides=ov, seed=seed))
    click.echo(json.dumps(res))


def parse_overrides(items) -> dict:
    """--set KEY=VALUE items -> config overrides: true/false, numbers, else strings."""
    ov = {}
    for item in items:
        k, _, v = item.partition("=")
        if v.lower() in ("true", "false"):
            ov[k] = v.lower() == "true"
        elif v.lstrip("-").replace(".", "", 1).isdigit():
            ov[k] = float(v) if "." in v else int(v)
        else:
            ov[k] = v
    return ov


@click.command("eval-bpd")
@click.option("--model", "model_path", required=True, help="Run folder, .safetensors file or shipped model name.")
@click.option("--data", required=True, help="A folder of images, or cifar10-test.")
@click.option("--iw", default=1, show_default=True, help="Importance samples per image.")
@click.option("--limit", type=int, default=None, help="Use only the first N images.")
@click.option("--batch", default=64, show_default=True)
@click.option("--json", "json_path", default=None, help="Also write the result, with model, data and command, here.")
def eval_bpd_cmd(model_path, data, iw, limit, batch, json_path):
    """Negative ELBO and importance-weighted NLL in bits per dimension."""
    import shlex
    import sys

    from selfcodec.train import data as datamod

    from selfcodec import provenance, zoo
    from selfcodec.train.evaluate import eval_bpd
    from selfcodec.fileio import atomic_write

    images = datamod.as_list(datamod.resolve(data))[:limit]
    res = eval_bpd(zoo.load_any(model_path), images, iw=iw, batch=batch, progress=True)
    if json_path:
        record = {"model": model_path, "data": data, "limit": limit, **res,
                  **provenance.stamp("selfcodec " + shlex.join(sys.argv[1:]))}
        atomic_write(json_path, (json.dumps(record, indent=1) + "\n").encode())
    click.echo(f"-ELBO {res['nelbo']:.4f} bpd  (re_x {res['re_x']:.4f}, re_y {res['re_y']:.4f}, "
               f"kl_u {res['kl_u']:.4f}, kl_z {res['kl_z']:.4f})")
    click.echo(f"IW NLL ({iw} samples) {res['iw_nll']:.4f} bpd over {res['images']} images")


@click.command("plot-log")
@click.argument("csv_path", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", required=True)
@click.option("--title", default=None)
def plot_log_cmd(csv_path, output, title):
    """Plot a training log's loss terms (bits per dimension) against steps."""
    from selfcodec.train.loop import plot_log

    click.echo(plot_log(Path(csv_path), Path(output), title))


@click.command("export")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--output", required=True, help="The .safetensors model file to write.")
@click.option("--dtype", type=click.Choice(["bf16", "fp16", "fp32"]), default="bf16", show_default=True)
@click.option("--weights", type=click.Choice(["ema", "live"]), default="ema", show_default=True)
def export_cmd(run_dir, output, dtype, weights):
    """Write a run's EMA (or live) weights as a small model file."""
    from selfcodec.train.loop import export

    click.echo(export(Path(run_dir), Path(output), dtype, weights))


@click.command("merge")
@click.argument("base", type=click.Path(exists=True, dir_okay=False))
@click.option("-p", "--part", "parts", multiple=True, required=True, metavar="RUN=MODULE[,MODULE]",
              help="A run trained alone on BASE (--train-only) and the modules to take from it.")
@click.option("-o", "--output", required=True, help="The .safetensors model file to write.")
@click.option("--dtype", type=click.Choice(["bf16", "fp16", "fp32"]), default="fp16", show_default=True)
def merge_cmd(base, parts, output, dtype):
    """One model file from BASE and parts trained alone on it, each with the settings its run set."""
    from selfcodec.train.merge import merge

    pairs = []
    for p in parts:
        run, _, modules = p.partition("=")
        if not modules:
            raise click.BadParameter(f"{p!r}: say which modules to take, as RUN=MODULE[,MODULE]", param_hint="--part")
        pairs.append((Path(run), tuple(modules.split(","))))
    info = merge(Path(base), pairs, Path(output), dtype)
    click.echo(f"{output}: " + ", ".join(f"{q['modules']} from {q['run']} ({q['steps']} steps)" for q in info["parts"]))


@click.command()
@click.option("--image", default=None, help="Another image instead of the bundled sample.")
@click.option("--model", default=None, help="Model name or path (default: each mode's default model).")
@click.option("-l", "--level", default=3, show_default=True, metavar="LEVEL",
              help="Quality level 1-7 of every mode's file.")
def demo(image, model, level):
    """Encode and decode the bundled sample in every mode; print size, bpp and PSNR."""
    from selfcodec import demo as d

    click.echo(f"{'mode':<9} {'bytes':>8} {'bpp':>7} {'PSNR dB':>8} {'enc s':>6} {'dec s':>6}  model")
    for r in d.run(image, model, level):
        q = "lossless" if r["exact"] else f"{r['psnr']:.2f}"
        click.echo(f"{r['mode']:<9} {r['bytes']:>8} {r['bpp']:>7.3f} {q:>8} {r['encode_s']:>6.2f} {r['decode_s']:>6.2f}"
                   f"  {r['model']}")
