"""Coding cost of selfcodec on Kodak images, in one run with WebP as the yardstick: MACs per
pixel of the API's rec2 decode and encode (torch.utils.flop_counter: convolutions and matrix
products), and wall time per image of in-process encode and decode with N threads. Also the
command line as a user meets it: `selfcodec decode` of a 1 MP file (the first image upscaled to
1224x816) to PNG and `selfcodec info`, start-up included, beside `import torch` alone.

    python -m benchmarks.speed [--models selfvae-downscale-dense,selfvae-downscale] [--images 4]
                               [--level 3] [--threads 2] [--webp-q 75] [--out benchmarks/results]

Writes speed.json: per model the MACs per pixel (counted once, on the first image), the median
encode and decode seconds over the images, and each as a multiple of WebP's in this run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from selfcodec import api

from . import baselines as B
from .common import DEFAULT_KODAK, DEFAULT_OUT, list_images, load_rgb, stamp, start_run, to_jsonable


def macs_per_pixel(fn, pixels: int) -> float:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops() / 2 / pixels


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def command_line(img: np.ndarray, mode: str, level: int, threads: int, runs: int = 3) -> dict:
    """Median wall seconds of `selfcodec decode` (1 MP, to PNG) and `selfcodec info` in fresh
    processes, and of `python -c "import torch"`, which every decode pays first."""
    from PIL import Image

    big = np.asarray(Image.fromarray(img).resize((1224, 816), Image.BICUBIC))
    cmd = [sys.executable, "-m", "selfcodec"]

    def wall(args):
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            done = subprocess.run(args, capture_output=True, text=True)
            if done.returncode:
                raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    with tempfile.TemporaryDirectory() as tmp:
        svae = Path(tmp) / "photo.svae"
        svae.write_bytes(api.encode(big, mode=mode, level=level))
        return {"size": "1224x816", "model": "default", "mode": mode, "level": level, "threads": threads, "runs": runs,
                "decode_png_s": wall(cmd + ["decode", str(svae), "-o", str(Path(tmp) / "out.png"), "-f",
                                            "--threads", str(threads)]),
                "info_s": wall(cmd + ["info", str(svae)]),
                "import_torch_s": wall([sys.executable, "-c", "import torch"])}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="selfvae-downscale-dense,selfvae-downscale")
    ap.add_argument("--data", default=str(DEFAULT_KODAK))
    ap.add_argument("--images", type=int, default=4, help="the first N Kodak images (0: all)")
    ap.add_argument("--mode", default="rec2")
    ap.add_argument("--level", type=int, default=api.DEFAULT_LEVEL)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--webp-q", type=float, default=75)
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    a = ap.parse_args(argv)
    full_argv, out, notes, note = start_run("speed", a.out, argv)
    torch.set_num_threads(a.threads)
    files = list_images(a.data)
    files = files[:a.images] if a.images else files
    images = [(f.stem, load_rgb(f)) for f in files]
    webp_enc, webp_dec = [], []
    for _, img in images:
        _, _, te, td = B.webp(img, a.webp_q)
        webp_enc.append(te)
        webp_dec.append(td)
    result = {"webp": {"q": a.webp_q, "enc_s": statistics.median(webp_enc), "dec_s": statistics.median(webp_dec)}}
    for model in a.models.split(","):
        name, img0 = images[0]
        pixels = img0.shape[0] * img0.shape[1]
        api.encode(img0, mode=a.mode, level=a.level, model=model)  # loads the model: not part of the timings
        data0 = api.encode(img0, mode=a.mode, level=a.level, model=model)
        enc_macs = macs_per_pixel(lambda: api.encode(img0, mode=a.mode, level=a.level, model=model), pixels)
        dec_macs = macs_per_pixel(lambda: api.decode(data0, model=model), pixels)
        enc_s, dec_s, bpp = [], [], []
        for _, img in images:
            data, te = timed(lambda: api.encode(img, mode=a.mode, level=a.level, model=model))
            _, td = timed(lambda: api.decode(data, model=model))
            enc_s.append(te)
            dec_s.append(td)
            bpp.append(8 * len(data) / (img.shape[0] * img.shape[1]))
        row = {"mode": a.mode, "level": a.level, "mac_per_pixel_decode": dec_macs, "mac_per_pixel_encode": enc_macs,
               "mac_counted_on": name, "enc_s": statistics.median(enc_s), "dec_s": statistics.median(dec_s),
               "enc_s_each": enc_s, "dec_s_each": dec_s, "bpp_mean": float(np.mean(bpp))}
        row["enc_x_webp"] = row["enc_s"] / result["webp"]["enc_s"]
        row["dec_x_webp"] = row["dec_s"] / result["webp"]["dec_s"]
        result[model] = row
        note(f"{model}: {a.mode} level {a.level}: decode {dec_macs / 1e3:.1f}k MAC/px, encode {enc_macs / 1e3:.1f}k; "
             f"median encode {row['enc_s']:.3f} s ({row['enc_x_webp']:.0f}x WebP), decode {row['dec_s']:.3f} s "
             f"({row['dec_x_webp']:.0f}x WebP) over {len(images)} images")
    cli = command_line(images[0][1], a.mode, a.level, a.threads)
    note(f"command line, 1224x816 {a.mode} level {a.level}: decode to PNG {cli['decode_png_s']:.2f} s, "
         f"info {cli['info_s']:.2f} s; import torch alone {cli['import_torch_s']:.2f} s (medians of {cli['runs']})")
    result["command_line"] = cli
    doc = {"meta": {**stamp(full_argv), "threads": a.threads, "images": [n for n, _ in images], "notes": notes},
           "results": result}
    (out / "speed.json").write_text(json.dumps(to_jsonable(doc), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
