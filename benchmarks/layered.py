"""What layers cost: per Kodak image, a layered lossless file against the one-chain lossless file of
the same model, and each of its cut-down prefixes against the plain file of that mode and level.

    python -m benchmarks.layered [--images 6] [--level 3] [--model NAME] [--out benchmarks/results]

Writes layered.json: bytes of every file, PSNR of every cut and plain lossy file, and the means.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from selfcodec import api, zoo

from .common import DEFAULT_KODAK, DEFAULT_OUT, list_images, load_rgb, stamp, start_run, to_jsonable


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(DEFAULT_KODAK))
    ap.add_argument("--images", type=int, default=6, help="the first N images (0: all)")
    ap.add_argument("--level", type=int, default=api.DEFAULT_LEVEL)
    ap.add_argument("--model", default=None, help="default: the lossless default")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    a = ap.parse_args(argv)
    full_argv, out, notes, note = start_run("layered", a.out, argv)
    model = a.model or zoo.default_for("lossless")
    files = list_images(a.data)
    files = files[:a.images] if a.images else files
    rows = []
    for f in files:
        img = load_rgb(f)
        layered = api.encode(img, "lossless", a.level, model=model)
        plain = api.encode(img, "lossless", a.level, model=model, layered=False)
        row = {"image": f.stem, "lossless_layered": len(layered), "lossless_plain": len(plain)}
        for mode in ("crec", "rec2", "rec1"):
            cut = api.truncate(layered, mode)
            row[f"{mode}_cut"] = len(cut)
            row[f"{mode}_cut_psnr"] = psnr(api.decode(cut, model=model, as_array=True), img)
            if mode != "crec":  # a crec file codes ẑ given the exact y, so it is another file, not this layer
                rep = api.encode_report(img, mode, a.level, model=model)
                row[f"{mode}_plain"], row[f"{mode}_plain_psnr"] = len(rep["data"]), psnr(rep["recon"], img)
        rows.append(row)
        note(f"{f.stem}: lossless {len(plain)} -> {len(layered)} bytes layered; rec2 cut {row['rec2_cut']} "
             f"({row['rec2_cut_psnr']:.2f} dB) vs file {row['rec2_plain']} ({row['rec2_plain_psnr']:.2f} dB)")
    keys = [k for k in rows[0] if k != "image"]
    mean = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    mean["lossless_extra_percent"] = 100 * (sum(r["lossless_layered"] for r in rows) / sum(r["lossless_plain"] for r in rows) - 1)
    mean["rec2_extra_percent"] = 100 * (sum(r["rec2_cut"] for r in rows) / sum(r["rec2_plain"] for r in rows) - 1)
    note(f"mean over {len(rows)} images: layered lossless {mean['lossless_extra_percent']:+.3f} % bytes; "
         f"rec2 cut {mean['rec2_extra_percent']:+.3f} % bytes, PSNR {mean['rec2_cut_psnr']:.3f} vs {mean['rec2_plain_psnr']:.3f} dB")
    doc = {"meta": {**stamp(full_argv), "model": model, "level": a.level, "notes": notes}, "images": rows, "mean": mean}
    (out / "layered.json").write_text(json.dumps(to_jsonable(doc), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
