"""Tile borders on real photos: the step across each tile border of a decoded image over the mean
step of the three columns (rows) on either side, before (each tile coded and reconstructed on
its own, as files of format versions 1-5 are) and after (format version 7: coded under
whole-image priors and reconstructed across the tiles, codec/tiled.py), beside the original's at
the same borders; how many pixels differ from the image coded in one tile (none, where the
image is the same whatever the tile size); and what the tiles cost in rate against one tile.

    python -m benchmarks.seams [--images 24] [--tile 256] [--mode rec2] [--level 3] [--out benchmarks/results]

Kodak's 768x512 photos at tiles of 256 have two column borders and one row border (or the
transpose). Writes seams.json.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from selfcodec import api
from selfcodec.codec import container as C

from .common import DEFAULT_KODAK, DEFAULT_OUT, list_images, load_rgb, stamp, start_run, to_jsonable
from .layered import psnr


def border_ratios(img: np.ndarray, tile: int) -> list:
    """Per tile border: mean |step| across it (pixel b-1 to b) over the mean of the three steps on either side."""
    grey = img.astype(float).mean(2)
    out = []
    for axis in (1, 0):
        g = np.abs(np.diff(grey, axis=axis)).mean(axis=1 - axis)
        out += [float(g[b - 1] / np.r_[g[b - 5:b - 2], g[b:b + 3]].mean()) for b in range(tile, grey.shape[axis], tile)]
    return out


def tile_by_tile(img: np.ndarray, tile: int, mode: str, level: int):
    """(x̂, bytes) with each tile coded and reconstructed on its own."""
    out, size = np.empty_like(img), 0
    for top, left, h, w in C.tile_grid(*img.shape[:2], tile, tile):
        rep = api.encode_report(np.ascontiguousarray(img[top:top + h, left:left + w]), mode, level)
        out[top:top + h, left:left + w] = rep["recon"]
        size += len(rep["data"])
    return out, size


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(DEFAULT_KODAK))
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--mode", default="rec2")
    ap.add_argument("--level", type=int, default=3)
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    a = ap.parse_args(argv)
    full_argv, out, notes, note = start_run("seams", a.out, argv)
    rows = []
    for f in list_images(a.data)[:a.images or None]:
        img = load_rgb(f)
        px = img.shape[0] * img.shape[1]
        before, before_bytes = tile_by_tile(img, a.tile, a.mode, a.level)
        after = api.encode_report(img, a.mode, a.level, tile=a.tile)
        assert C.peek_header(after["data"]).seamless
        whole = api.encode_report(img, a.mode, a.level, tile=2048)
        row = {"image": f.stem, "original": border_ratios(img, a.tile), "before": border_ratios(before, a.tile),
               "after": border_ratios(after["recon"], a.tile), "whole": border_ratios(whole["recon"], a.tile),
               "bpp": {"before": 8 * before_bytes / px, "after": 8 * len(after["data"]) / px,
                       "whole": 8 * len(whole["data"]) / px},
               "psnr": {"before": psnr(before, img), "after": psnr(after["recon"], img), "whole": psnr(whole["recon"], img)},
               "pixels_unlike_one_tile": int((after["recon"] != whole["recon"]).any(2).sum()),
               "max_abs_unlike_one_tile": int(np.abs(after["recon"].astype(int) - whole["recon"]).max())}
        rows.append(row)
        note(f"{f.stem}: worst border ratio before {max(row['before']):.2f}, after {max(row['after']):.2f}, "
             f"one tile {max(row['whole']):.2f}, original {max(row['original']):.2f}; "
             f"{row['pixels_unlike_one_tile']} pixels unlike the one-tile image")
    summary = {k: {"worst": max(max(r[k]) for r in rows), "mean": float(np.mean([v for r in rows for v in r[k]]))}
               for k in ("original", "before", "after", "whole")}
    for k in ("bpp", "psnr"):
        summary[k] = {s: float(np.mean([r[k][s] for r in rows])) for s in ("before", "after", "whole")}
    summary["pixels_unlike_one_tile"] = sum(r["pixels_unlike_one_tile"] for r in rows)
    summary["max_abs_unlike_one_tile"] = max(r["max_abs_unlike_one_tile"] for r in rows)
    note(f"worst border ratio over {len(rows)} images: before {summary['before']['worst']:.2f}, after "
         f"{summary['after']['worst']:.2f}, one tile {summary['whole']['worst']:.2f}, original "
         f"{summary['original']['worst']:.2f}; mean bpp before/after/one tile {summary['bpp']['before']:.4f}/"
         f"{summary['bpp']['after']:.4f}/{summary['bpp']['whole']:.4f}, PSNR {summary['psnr']['before']:.2f}/"
         f"{summary['psnr']['after']:.2f}/{summary['psnr']['whole']:.2f} dB; {summary['pixels_unlike_one_tile']} pixels "
         f"unlike the one-tile images (largest difference {summary['max_abs_unlike_one_tile']})")
    doc = {"meta": {**stamp(full_argv), "tile": a.tile, "mode": a.mode, "level": a.level, "notes": notes},
           "summary": summary, "rows": rows}
    (out / "seams.json").write_text(json.dumps(to_jsonable(doc), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
