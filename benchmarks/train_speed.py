"""Training throughput in pixels per second: the step each model is trained with (the
rate-distortion objective with `--quant mixed` for a rate-distortion model, else the ELBO),
same batch and crops for all, in fp32 and in bf16 autocast with channels_last, in one run whose
steps interleave the models.
Writes benchmarks/results/train_speed.json with each model's best and its ratio to the first.

    python -m benchmarks.train_speed [MODEL ...] [--batch 8] [--crop 128] [--steps 6 (rounds)] [--threads 2]

MODEL is a .safetensors file or a training run's folder (its configuration is read; the
weights are not: speed does not depend on them); by default the earlier default
(selfvae-downscale-dense) and the shipped default. A fast-family model is measured as its run
trains it (RealNVP frozen, cgen's term on a quarter of the batch); a DenseNet model as its runs
did (every part learning).
"""

import argparse
import json
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from selfcodec.entropy.dmol import DMoL
from selfcodec import zoo
from selfcodec.model.checkpoint import read_config
from selfcodec.model.base import loss_from_terms, rd_loss
from selfcodec.model.registry import build_model

DEFAULT_MODELS = ["selfvae-downscale-dense", "selfvae-downscale"]


def _config(spec: str):
    p = Path(spec)
    if p.is_dir():
        return read_config(p / "ckpt.safetensors")
    return read_config(zoo.model_path(spec))


def make_step(cfg, bf16: bool, batch: int, crop: int):
    """One training step of the model, as its runs train it, run twice to warm up (which
    compiles the likelihood)."""
    torch.manual_seed(0)
    m = build_model(cfg)
    m.dmol_log_prob = torch.compile(DMoL.log_prob, dynamic=False)
    m.dmol_mean = torch.compile(DMoL.mean, dynamic=False)
    fast = cfg.network == "fast"
    if fast:
        m.flow.requires_grad_(False)
    layout = torch.channels_last if bf16 else torch.contiguous_format
    m = m.to(memory_format=layout)
    x = torch.randint(0, 256, (batch, 3, crop, crop)).float().contiguous(memory_format=layout)
    opt = torch.optim.Adamax([p for p in m.parameters() if p.requires_grad], 1e-4, foreach=True)
    lambdas = torch.tensor(cfg.rd_lambdas or (0.0,))
    gen = torch.Generator().manual_seed(0)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            if cfg.rd_lambdas:
                lv = torch.randint(0, len(lambdas), (batch,), generator=gen)
                terms = m(x, level_idx=lv, quant="mixed", cgen=batch // 4 if fast else 0)
        if cfg.rd_lambdas:
            loss = rd_loss(terms, lambdas[lv], crop * crop, 0.01, 0.02 if fast else 0.0, 0.1 if fast else 0.0)
        else:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                terms = m(x)
            loss = loss_from_terms(terms, x[0].numel())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 50.0)
        opt.step()

    for _ in range(2):
        step()
    return step


def measure_interleaved(steps: dict, rounds: int) -> dict:
    """Seconds per step of each named step function: the median of its timed steps, taken in
    `rounds` rounds that run every function in turn (a fast one several times, up to the median
    function's step time), so drift in the machine's speed (other tenants, clocks) reaches
    every model alike; the median, as other work only ever adds time."""
    first = {}
    for name, step in steps.items():
        t0 = time.perf_counter()
        step()
        first[name] = time.perf_counter() - t0
    target = statistics.median(first.values())
    reps = {name: max(1, min(10, round(target / t))) for name, t in first.items()}
    times = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            for _ in range(reps[name]):
                t0 = time.perf_counter()
                step()
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="*", default=DEFAULT_MODELS)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/train_speed.json"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch._dynamo.config.cache_size_limit = 64  # every model's likelihood graphs stay compiled side by side
    pixels = a.batch * a.crop * a.crop
    cfgs = {spec: _config(spec) for spec in a.models}
    steps = {(spec, bf16): make_step(cfg, bf16, a.batch, a.crop) for spec, cfg in cfgs.items() for bf16 in (False, True)}
    secs = measure_interleaved(steps, a.steps)
    rows, first = {}, None
    for spec, cfg in cfgs.items():
        params = sum(p.numel() for p in build_model(cfg).parameters())
        s32, s16 = secs[(spec, False)], secs[(spec, True)]
        best = min(s32, s16)
        first = first or best
        rows[spec] = {"network": cfg.network, "parameters": params, "s_per_step_fp32": s32, "s_per_step_bf16": s16,
                      "pixels_per_s_fp32": pixels / s32, "pixels_per_s_bf16": pixels / s16,
                      "best": "bf16" if s16 < s32 else "fp32", "pixels_per_s": pixels / best,
                      "speedup_vs_first": first / best, "config": json.loads(cfg.to_json())}
        print(f"{spec:<28} {params:>10,} params  fp32 {pixels / s32 / 1e3:7.1f}k px/s  bf16 {pixels / s16 / 1e3:7.1f}k px/s"
              f"  best x{first / best:.2f} of the first", flush=True)
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")),
               platform.processor())
    out = {"meta": {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cpu": cpu,
                    "threads": a.threads, "batch": a.batch, "crop": a.crop, "rounds": a.steps, "interleaved": True,
                    "torch": torch.__version__, "command": " ".join(["python -m benchmarks.train_speed"] + sys.argv[1:])},
           "models": rows}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
