"""cgen and crec against the plainest use of what they send: a bicubic 2x upscale of the y the
decoder holds (y = d(x), binned by the level as the file codes it). Per Kodak image and level.

    python -m benchmarks.cgen_bicubic [--images 4] [--levels 1,3,6] [--model NAME] [--out benchmarks/results]

Writes cgen_bicubic.json: PSNR of cgen's and crec's x̂ and of the bicubic upscale, their bpp, whether
the file carries that upscale instead of the model's x̂ (the encoder's upscale choice), and for each
mode the worst margin over bicubic (negative: cgen or crec is worse somewhere).
"""

from __future__ import annotations

import argparse
import json

import cv2
import numpy as np
import torch

from selfcodec import api
from selfcodec.codec import modes as M
from selfcodec.entropy.dmol import DMoL
from selfcodec.nn.transforms import downscale

from .common import DEFAULT_KODAK, DEFAULT_OUT, list_images, load_rgb, stamp, start_run, to_jsonable
from .layered import psnr


def decoder_y(img: np.ndarray, level: int) -> np.ndarray:
    """The y a cgen/crec decoder holds at `level`: the 2x2 rounded means, binned as coded."""
    y = downscale(torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float())[0].permute(1, 2, 0).numpy().astype(np.uint8)
    step = M.LEVELS[level][1]
    return DMoL.bin_values(y, step).astype(np.uint8) if step > 1 else y


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(DEFAULT_KODAK))
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--levels", default="1,3,6")
    ap.add_argument("--model", default=None)
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    a = ap.parse_args(argv)
    full_argv, out, notes, note = start_run("cgen_bicubic", a.out, argv)
    files = list_images(a.data)[:a.images or None]
    rows = []
    for f in files:
        img = load_rgb(f)
        h, w = img.shape[:2]
        for level in (int(v) for v in a.levels.split(",")):
            y = decoder_y(img[: h - h % 2, : w - w % 2], level)
            bicubic = cv2.resize(y, (w, h), interpolation=cv2.INTER_CUBIC)
            row = {"image": f.stem, "level": level, "bicubic_psnr": psnr(bicubic, img)}
            for mode in ("cgen", "crec"):
                rep = api.encode_report(img, mode, level, model=a.model)
                row[f"{mode}_psnr"], row[f"{mode}_bpp"] = psnr(rep["recon"], img), 8 * len(rep["data"]) / (h * w)
                # the file carries the upscale (the encoder's choice; one tile per Kodak image), to within rounding
                row[f"{mode}_upscale"] = bool(np.abs(rep["recon"].astype(int) - bicubic).max() <= 1)
            rows.append(row)
            note(f"{f.stem} level {level}: bicubic {row['bicubic_psnr']:.2f} dB, cgen {row['cgen_psnr']:.2f} dB "
                 f"({row['cgen_bpp']:.2f} bpp), crec {row['crec_psnr']:.2f} dB ({row['crec_bpp']:.2f} bpp)")
    margins = {m: min(r[f"{m}_psnr"] - r["bicubic_psnr"] for r in rows) for m in ("cgen", "crec")}
    note(f"worst margin over bicubic: cgen {margins['cgen']:+.2f} dB, crec {margins['crec']:+.2f} dB; the upscale sent "
         f"in {sum(r['cgen_upscale'] for r in rows)} (cgen) and {sum(r['crec_upscale'] for r in rows)} (crec) of {len(rows)}")
    doc = {"meta": {**stamp(full_argv), "model": a.model or "default", "notes": notes}, "rows": rows,
           "worst_margin_db": margins}
    (out / "cgen_bicubic.json").write_text(json.dumps(to_jsonable(doc), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
