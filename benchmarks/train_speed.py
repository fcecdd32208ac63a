"""Training throughput (images per second) of each model at its default width, fp32 against
bf16 autocast with channels_last, on this machine; parameter counts. Writes
benchmarks/results/train_speed.json.

    python -m benchmarks.train_speed [--batch 8] [--crop 128] [--steps 4] [--threads 2]
"""

import argparse
import json
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from selfcodec import distributions as D
from selfcodec.family import PRESETS, SelfVAE, loss_from_terms, make_config
from selfcodec.nets import data_dependent_init


def measure(name: str, bf16: bool, batch: int, crop: int, steps: int, compile_loss: bool) -> float:
    torch.manual_seed(0)
    m = SelfVAE(make_config(name))
    x = torch.randint(0, 256, (batch, 3, crop, crop)).float()
    data_dependent_init(m, x)
    m = m.to(memory_format=torch.channels_last)
    if compile_loss:
        m.dmol_log_prob = torch.compile(D.dmol_log_prob, dynamic=False)
    x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.Adamax(m.parameters(), 1e-3)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            terms = m(x)
        loss = loss_from_terms(terms, x[0].numel())
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(2):  # warm-up (and compilation)
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compile", action="store_true", help="torch.compile the likelihood, as training does")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/train_speed.json"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    rows = {}
    for name in PRESETS:
        params = sum(p.numel() for p in SelfVAE(make_config(name)).parameters())
        fp32 = measure(name, False, a.batch, a.crop, a.steps, a.compile)
        bf16 = measure(name, True, a.batch, a.crop, a.steps, a.compile)
        rows[name] = {"parameters": params, "img_per_s_fp32": fp32, "img_per_s_bf16": bf16, "bf16_speedup": bf16 / fp32}
        print(f"{name:<22} {params:>10,} params  fp32 {fp32:6.2f} img/s  bf16 {bf16:6.2f} img/s  x{bf16 / fp32:.2f}")
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), platform.processor())
    out = {"meta": {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cpu": cpu,
                    "threads": a.threads, "batch": a.batch, "crop": a.crop, "steps": a.steps, "compile": a.compile,
                    "torch": torch.__version__, "command": " ".join(["python -m benchmarks.train_speed"] + sys.argv[1:])},
           "models": rows}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
