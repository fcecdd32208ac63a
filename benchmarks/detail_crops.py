"""Detail crops beside WebP at the same file size: glass on a facade, sky by a roof line, skin
and lettering, each at about 0.25 and 0.5 bpp (the whole image coded; selfcodec rec2 at the
level nearest the target, WebP at the quality whose file is the same size or just smaller).
PSNR misses what a person sees first: colour speckle on flat areas, wobbly lines, lost joints.

    python -m benchmarks.detail_crops [--model PATH] [--out benchmarks/results]
"""

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from benchmarks import baselines
from benchmarks.common import DEFAULT_OUT, load_rgb, stamp
from selfcodec import api
from selfcodec.metrics import psnr
from selfcodec.train.data import data_root

# (what, Kodak image, top, left): 128x128 crops of the full-size images
CROPS = [("glass on a facade", "kodim01", 250, 420), ("sky by a roof line", "kodim19", 90, 250),
         ("skin", "kodim04", 300, 250), ("lettering", "kodim20", 230, 210), ("sign and windows", "kodim08", 250, 560)]
SIDE, ZOOM, TARGETS = 128, 2, (0.25, 0.5)


def selfcodec_near(img, target: float, model) -> dict:
    """rec2 at the level whose whole file is nearest `target` bpp."""
    best = None
    for level in api.LEVELS:
        try:
            rep = api.encode_report(img, "rec2", level, model=model)
        except Exception:  # a model with fewer levels
            break
        bpp = 8 * len(rep["data"]) / (img.shape[0] * img.shape[1])
        if best is None or abs(bpp - target) < abs(best["bpp"] - target):
            best = {"level": level, "bytes": len(rep["data"]), "bpp": bpp, "recon": rep["recon"]}
    return best


def webp_at_most(img, size: int) -> dict:
    """WebP at the highest quality whose file is at most `size` bytes (bisection over 0..100)."""
    lo, hi, best = 0.0, 100.0, None
    for _ in range(12):
        q = (lo + hi) / 2
        data, dec, _, _ = baselines.webp(img, q)
        if len(data) <= size:
            best, lo = {"quality": q, "bytes": len(data), "recon": dec}, q
        else:
            hi = q
    if best is None:
        data, dec, _, _ = baselines.webp(img, 0)
        best = {"quality": 0, "bytes": len(data), "recon": dec}
    best["bpp"] = 8 * best["bytes"] / (img.shape[0] * img.shape[1])
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model file or shipped name (default: the default model)")
    ap.add_argument("--data", default=str(data_root() / "kodak"))
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    a = ap.parse_args(argv)
    cell, label = SIDE * ZOOM, 30
    cols = 1 + 2 * len(TARGETS)
    sheet = Image.new("RGB", (cols * (cell + 4), len(CROPS) * (cell + label + 4)), "white")
    draw = ImageDraw.Draw(sheet)
    rows = []
    for r, (what, name, top, left) in enumerate(CROPS):
        img = load_rgb(Path(a.data) / f"{name}.png")
        crop = (slice(top, top + SIDE), slice(left, left + SIDE))
        tiles = [(img, f"{name} original: {what}")]
        row = {"what": what, "image": name, "top": top, "left": left, "rates": []}
        for target in TARGETS:
            sc = selfcodec_near(img, target, a.model)
            wp = webp_at_most(img, sc["bytes"])
            for codec, res in (("selfcodec", sc), ("WebP", wp)):
                res["psnr_image"] = psnr(img, res["recon"])
                res["psnr_crop"] = psnr(img[crop], res["recon"][crop])
                tiles.append((res["recon"], f"{codec} {res['bpp']:.3f} bpp, crop {res['psnr_crop']:.2f} dB"))
            row["rates"].append({"target_bpp": target,
                                 **{c: {k: v for k, v in res.items() if k != "recon"} for c, res in
                                    (("selfcodec", sc), ("webp", wp))}})
        for c, (pic, text) in enumerate(tiles):
            tile = Image.fromarray(np.ascontiguousarray(pic[crop])).resize((cell, cell), Image.NEAREST)
            x, y = c * (cell + 4), r * (cell + label + 4)
            sheet.paste(tile, (x, y + label))
            draw.text((x + 2, y + 2), text[:42], fill="black")
            if len(text) > 42:
                draw.text((x + 2, y + 15), text[42:84], fill="black")
        rows.append(row)
        print(name, what, [(t["target_bpp"], round(t["selfcodec"]["psnr_crop"], 2), round(t["webp"]["psnr_crop"], 2))
                           for t in row["rates"]], flush=True)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    sheet.save(out / "detail_crops.png")
    with open(out / "detail_crops.json", "w") as f:
        json.dump({"meta": {**stamp(), "model": a.model or "default", "crop": SIDE, "zoom": ZOOM}, "crops": rows},
                  f, indent=1, default=float)


if __name__ == "__main__":
    main()
