"""A quick lossless proxy for comparing checkpoints (a minute, not Kodak's full run): the real
codec's lossless streams (exact path) on centre crops of held-out photos (BSDS500 test), bits
per subpixel per stream, each model's total against the first one named. Streams' bytes
only (no container header): compare models with it, report Kodak.

    python -m benchmarks.proxy_lossless models/selfvae-downscale.safetensors runs/ll1
"""

import json
import time

import numpy as np

from benchmarks.common import DEFAULT_OUT, load_images
from benchmarks.proxy_rd import proxy_args
from selfcodec import zoo
from selfcodec.codec import modes as M
from selfcodec.train.data import image_files


def proxy(net, crops: list, level: int) -> dict:
    plan, bits, t0 = M.plan_for("lossless", net.cfg.scales), {}, time.perf_counter()
    for img in crops:
        streams, _, rec, _ = M.encode_tile(net, img, plan, level, exact=True)
        if not np.array_equal(rec, img):
            raise AssertionError("the lossless coder's prediction is not the image")
        for i, s in enumerate(streams):
            bits[i] = bits.get(i, 0) + 8 * len(s)
    subpixels = sum(img.size for img in crops)
    per_stream = [bits[i] / subpixels for i in sorted(bits)]
    return {"bits_per_subpixel": sum(per_stream), "per_stream": per_stream,
            "enc_s_per_crop": (time.perf_counter() - t0) / len(crops)}


def main(argv=None):
    ap = proxy_args(__doc__)
    ap.add_argument("--level", type=int, default=M.DEFAULT_LEVEL, help="the level of the lossless file's lower layers")
    ap.add_argument("--out", default=str(DEFAULT_OUT / "proxy_lossless.json"))
    a = ap.parse_args(argv)
    named = load_images(image_files(a.data)[:a.n], a.crop)
    crops = [img for _, img in named]
    results = []
    for spec in a.models:
        row = {"model": spec, **proxy(zoo.load_any(spec), crops, a.level)}
        first = results[0]["bits_per_subpixel"] if results else row["bits_per_subpixel"]
        row["change_vs_first_percent"] = 100.0 * (row["bits_per_subpixel"] / first - 1.0)
        results.append(row)
        print(f"{spec}: {row['bits_per_subpixel']:.4f} bits/subpixel (streams "
              f"{', '.join(f'{b:.3f}' for b in row['per_stream'])}), {row['change_vs_first_percent']:+.2f} % "
              f"against {a.models[0]} ({row['enc_s_per_crop']:.2f} s/crop)", flush=True)
    meta = {"data": a.data, "level": a.level, "images": len(crops), "crop": a.crop, "files": [n for n, _ in named]}
    with open(a.out, "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
