"""One Kodak crop in every selfcodec mode, side by side (like Figure 6 of the selfVAE paper).

    python -m benchmarks.figure_modes [--image PNG] [--crop 256] [--level N] [--model PATH]
                                      [--out benchmarks/results/modes_figure.png]

Default image: the bundled ``selfcodec/assets/kodim23-crop.png`` (a crop of Kodak's
kodim23), centre-cropped to ``--crop`` x ``--crop``.  Panels: the original, then
every mode of ``selfcodec.api.MODES`` (rec1, rec2, cgen, crec, lossless) at one
level, each encoded with ``api.encode`` and decoded with the real decoder, with
its bpp (whole file) and PSNR-RGB underneath.  Writes the PNG and, next to it,
a JSON with the numbers and the provenance stamp (date, machine, command).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from selfcodec import api
from selfcodec import metrics as M

from .common import DEFAULT_OUT, center_crop, load_rgb, stamp, to_jsonable

ASSET = Path(api.__file__).resolve().parent / "assets" / "kodim23-crop.png"


def code_modes(img: np.ndarray, level: int, model=None, modes=None) -> list[dict]:
    h, w = img.shape[:2]
    rows = []
    for mode in modes or api.MODES:
        t0 = time.perf_counter()
        data = api.encode(img, mode=mode, level=level, model=model)
        t1 = time.perf_counter()
        dec = np.asarray(api.decode(data, model=model, as_array=True))
        t2 = time.perf_counter()
        rows.append({"mode": mode, "level": level, "bytes": len(data), "bpp": M.bpp(len(data), h, w),
                     "psnr": M.psnr(img, dec), "exact": bool(np.array_equal(img, dec)),
                     "enc_s": t1 - t0, "dec_s": t2 - t1, "image": dec})
    return rows


def figure(img: np.ndarray, rows: list[dict], path: Path, title: str = "") -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(rows) + 1
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 3.2))
    panels = [("original", img, f"{img.shape[1]}x{img.shape[0]}")] + [
        (r["mode"], r["image"], f"{r['bpp']:.3f} bpp, " + ("exact" if r["exact"] else f"{r['psnr']:.2f} dB"))
        for r in rows]
    for ax, (name, im, sub) in zip(axes, panels):
        ax.imshow(im, interpolation="nearest")
        ax.set_title(name, fontsize=11)
        ax.set_xlabel(sub, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.figure_modes", description=__doc__.split("\n\n")[0])
    p.add_argument("--image", default=str(ASSET), help="PNG to crop (default: the bundled kodim23 crop)")
    p.add_argument("--crop", type=int, default=256, help="centre crop side (0: whole image)")
    p.add_argument("--level", type=int, default=api.DEFAULT_LEVEL, help=f"quality level {api.LEVELS}")
    p.add_argument("--model", default=None, help="model name or .safetensors path (default: the shipped default)")
    p.add_argument("--out", default=str(DEFAULT_OUT / "modes_figure.png"))
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    full_argv = [sys.argv[0]] + (list(argv) if argv is not None else sys.argv[1:])
    import torch
    threads0 = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _main(args, full_argv)
    finally:
        torch.set_num_threads(threads0)


def _main(args, full_argv) -> dict:
    img = load_rgb(args.image)
    if args.crop:
        img = center_crop(img, args.crop)
    rows = code_modes(img, args.level, args.model)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = stamp(full_argv)
    from selfcodec import zoo
    meta.update({"image": str(Path(args.image).resolve()), "crop": args.crop or None, "level": args.level,
                 "model": args.model or "default", "model_hash": zoo.load(args.model)[1].hex(),
                 "size": [int(img.shape[1]), int(img.shape[0])]})
    figure(img, rows, out, f"{Path(args.image).name} {img.shape[1]}x{img.shape[0]}, level {args.level}, "
                           f"model {args.model or 'default'} — {meta['date'][:10]}")
    result = {"meta": meta, "figure": out.name, "modes": [{k: v for k, v in r.items() if k != "image"} for r in rows]}
    out.with_suffix(".json").write_text(json.dumps(to_jsonable(result), indent=1))
    print(f"[figure_modes] wrote {out} and {out.with_suffix('.json')}", file=sys.stderr)
    for r in result["modes"]:
        print(f"  {r['mode']:9s} {r['bytes']:8d} B  {r['bpp']:.3f} bpp  {r['psnr']:.2f} dB")
    return result


if __name__ == "__main__":
    main()
