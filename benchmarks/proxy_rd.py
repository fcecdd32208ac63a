"""A quick rate-quality proxy for comparing checkpoints during training (minutes, not the half
hour of the Kodak run): rec2 on centre crops of held-out photos (BSDS500 test), coded by the
real codec, per level, and each model's BD-rate against the first one named. bpp counts the
streams' bytes only (no container header): compare models with it, report Kodak.

    python -m benchmarks.proxy_rd models/selfvae-downscale.safetensors runs/rd3
"""

import argparse
import json
import time

import numpy as np

from benchmarks.common import DEFAULT_OUT, load_images
from selfcodec import zoo
from selfcodec.codec import modes as M
from selfcodec.train.data import data_root, image_files
from selfcodec.metrics import bd_rate, psnr


def proxy(net, crops: list, levels: list, search: int = 0) -> list:
    rows = []
    for level in levels:
        bpp, q, t0 = [], [], time.perf_counter()
        for img in crops:
            streams, _, rec, _ = M.encode_tile(net, img, M.plan_for("rec2", net.cfg.scales), level, search=search)
            bpp.append(8 * sum(len(s) for s in streams) / (img.shape[0] * img.shape[1]))
            q.append(psnr(img, rec))
        rows.append({"level": level, "bpp": float(np.mean(bpp)), "psnr": float(np.mean(q)),
                     "enc_s_per_crop": (time.perf_counter() - t0) / len(crops)})
    return rows


def proxy_args(doc: str) -> argparse.ArgumentParser:
    """The options every proxy takes: the models, and the held-out crops they are measured on."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("models", nargs="+", help="model files, shipped names or run folders (EMA weights)")
    ap.add_argument("--data", default=str(data_root() / "bsds500" / "test"))
    ap.add_argument("--n", type=int, default=24, help="images (the first N, sorted by name)")
    ap.add_argument("--crop", type=int, default=256)
    return ap


def main(argv=None):
    ap = proxy_args(__doc__)
    ap.add_argument("--levels", default="1,2,3,4,5,6,7")
    ap.add_argument("--search", type=int, default=0, help="steps of the encoder-side latent search")
    ap.add_argument("--out", default=str(DEFAULT_OUT / "proxy_rd.json"))
    a = ap.parse_args(argv)
    named = load_images(image_files(a.data)[:a.n], a.crop)
    crops = [img for _, img in named]
    levels = [int(v) for v in a.levels.split(",")]
    results = []
    for spec in a.models:
        net = zoo.load_any(spec)
        rows = proxy(net, crops, levels, a.search)
        first = results[0]["levels"] if results else rows
        bd = bd_rate([r["bpp"] for r in first], [r["psnr"] for r in first], [r["bpp"] for r in rows], [r["psnr"] for r in rows])
        results.append({"model": spec, "levels": rows, "bd_rate_vs_first_percent": bd})
        for r in rows:
            print(f"{spec} level {r['level']}: {r['bpp']:.4f} bpp {r['psnr']:.2f} dB ({r['enc_s_per_crop']:.2f} s/crop)",
                  flush=True)
        print(f"{spec}: BD-rate {bd:+.2f} % against {a.models[0]} (PSNR, over the levels)", flush=True)
    meta = {"data": a.data, "search": a.search, "images": len(crops), "crop": a.crop, "files": [name for name, _ in named]}
    with open(a.out, "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
