"""A quick rate-quality proxy for comparing checkpoints during training (minutes, not the half
hour of the Kodak run): rec2 on centre crops of held-out photos (BSDS500 test), coded by the
real codec, per level. bpp counts the streams' bytes only (no container header): compare
models with it, report Kodak.

    python -m benchmarks.proxy_rd models/selfvae-downscale.safetensors runs/rd3
"""

import argparse
import json
import time

import numpy as np

from benchmarks.common import DEFAULT_OUT, center_crop
from selfcodec.coding import modes as M
from selfcodec.data import image_files, load_folder, data_root
from selfcodec.metrics import psnr


def load_net(spec: str):
    from pathlib import Path

    from selfcodec import zoo
    from selfcodec.train import ema_model

    return ema_model(Path(spec)).eval() if Path(spec).is_dir() else zoo.load(spec)[0]


def proxy(net, crops: list, levels: list) -> list:
    rows = []
    for level in levels:
        bpp, q, t0 = [], [], time.perf_counter()
        for img in crops:
            streams, _, rec = M.encode_tile(net, img, M.plan_for("rec2", net.cfg.levels), level)
            bpp.append(8 * sum(len(s) for s in streams) / (img.shape[0] * img.shape[1]))
            q.append(psnr(img, rec))
        rows.append({"level": level, "bpp": float(np.mean(bpp)), "psnr": float(np.mean(q)),
                     "enc_s_per_crop": (time.perf_counter() - t0) / len(crops)})
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="model files, shipped names or run folders (EMA weights)")
    ap.add_argument("--data", default=str(data_root() / "bsds500" / "test"))
    ap.add_argument("--n", type=int, default=24, help="images (the first N, sorted by name)")
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--levels", default="1,3,5")
    ap.add_argument("--out", default=str(DEFAULT_OUT / "proxy_rd.json"))
    a = ap.parse_args(argv)
    crops = [center_crop(img, a.crop) for img in load_folder(a.data, limit=a.n)]
    levels = [int(v) for v in a.levels.split(",")]
    results = []
    for spec in a.models:
        net = load_net(spec)
        rows = proxy(net, crops, levels)
        results.append({"model": spec, "levels": rows})
        for r in rows:
            print(f"{spec} level {r['level']}: {r['bpp']:.4f} bpp {r['psnr']:.2f} dB ({r['enc_s_per_crop']:.2f} s/crop)",
                  flush=True)
    meta = {"data": a.data, "images": len(crops), "crop": a.crop, "files": [p.name for p in image_files(a.data)[:a.n]]}
    with open(a.out, "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
