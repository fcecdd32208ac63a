"""2x (or 4x) super-resolution on Kodak: selfcodec's conditional generation vs bicubic.

Each image is downscaled with the model's own transform (rounded 2x2 block means), upscaled
back by the model (`selfcodec.model.generate.upscale`) and by PIL bicubic, and both are compared to
the original by PSNR-RGB. Run nice'd, from the repository root:

    nice python -m benchmarks.upscale_kodak [--model PATH] [--images 4] [--crop 256]

Uses models/selfvae-downscale.safetensors when it exists, else --model is required.
Writes benchmarks/results/upscale_kodak.json (upscale_kodak_4x.json for --factor 4).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `selfcodec` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    __package__ = "benchmarks"

from benchmarks.common import DEFAULT_KODAK, DEFAULT_OUT, REPO_ROOT, center_crop, list_images, load_rgb, stamp, to_jsonable

DEFAULT_MODEL = REPO_ROOT / "models" / "selfvae-downscale.safetensors"


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.upscale_kodak", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help=f"model name or .safetensors (default: {DEFAULT_MODEL} if present)")
    p.add_argument("--kodak", default=str(DEFAULT_KODAK), help="folder of Kodak PNGs")
    p.add_argument("--images", type=int, default=4, help="use the first N images (0: all)")
    p.add_argument("--crop", type=int, default=0, help="centre crop side in pixels (0: whole images)")
    p.add_argument("--factor", type=int, default=2, choices=[2, 4])
    p.add_argument("--how", default="mean", choices=["mean", "mode"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(DEFAULT_OUT))
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    import torch

    from selfcodec.model import generate as G
    from selfcodec import zoo

    torch.set_num_threads(args.threads)
    model = args.model
    if model is None:
        if not DEFAULT_MODEL.is_file():
            raise SystemExit(f"{DEFAULT_MODEL} does not exist: pass --model PATH")
        model = str(DEFAULT_MODEL)
    net, digest, name = zoo.load(model)
    files = list_images(args.kodak)
    files = files[: args.images] if args.images > 0 else files
    images = [load_rgb(f) for f in files]
    if args.crop:
        images = [center_crop(i, args.crop) for i in images]
    t0 = time.time()
    res = G.upscale_benchmark(net, images, factor=args.factor, how=args.how)
    for row, f in zip(res["per_image"], files):
        row["file"] = f.name
    res.update(model=str(model), model_name=name, weights_hash=digest.hex(), how=args.how,
               crop=args.crop or None, seconds=round(time.time() - t0, 2), provenance=stamp())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "upscale_kodak.json" if args.factor == 2 else f"upscale_kodak_{args.factor}x.json"
    (out / name).write_text(json.dumps(to_jsonable(res), indent=2) + "\n")
    for r in res["per_image"]:
        print(f"{r['file']:<14} selfcodec {r['psnr_selfcodec']:6.2f} dB   bicubic {r['psnr_bicubic']:6.2f} dB")
    print(f"mean {args.factor}x  selfcodec {res['mean_psnr_selfcodec']:.2f} dB   bicubic {res['mean_psnr_bicubic']:.2f} dB"
          f"   -> {out / name}")
    return res


if __name__ == "__main__":
    main()
