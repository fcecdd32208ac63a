"""What the exact probability path costs, and whether its files decode elsewhere: per Kodak image
and mode, the bytes and PSNR of a file with exact tables (coder version 4) against the same
model's file with float tables (coder version 3), and whether each decodes with two threads and
with oneDNN disabled (a stand-in for another machine).

    python -m benchmarks.exact_cost [--images 0] [--level 3] [--model NAME] [--modes rec1,...] [--out benchmarks/results]

Writes exact_cost.json (exact_cost-NAME.json for a model other than the default).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch

from selfcodec import api
from selfcodec.model import exact as X
from selfcodec.codec.modes import coding_threads
from selfcodec.errors import CodecError

from .common import DEFAULT_KODAK, DEFAULT_OUT, list_images, load_rgb, stamp, start_run, to_jsonable
from .layered import psnr

MODES = ("rec1", "rec2", "cgen", "crec", "lossless")


def _decodes(data: bytes, model: str, img: np.ndarray, ctx) -> float | str:
    """PSNR of the file decoded under ctx, or the error's name."""
    try:
        with ctx:
            return psnr(api.decode(data, model=model, as_array=True), img)
    except CodecError as e:
        return type(e).__name__


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(DEFAULT_KODAK))
    ap.add_argument("--images", type=int, default=0, help="the first N images (0: all)")
    ap.add_argument("--level", type=int, default=api.DEFAULT_LEVEL)
    ap.add_argument("--model", default="selfvae-downscale")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    a = ap.parse_args(argv)
    modes = a.modes.split(",")
    full_argv, out, notes, note = start_run("exact_cost", a.out, argv)
    files = list_images(a.data)
    files = files[:a.images] if a.images else files
    rows = []
    for f in files:
        img = load_rgb(f)
        for mode in modes:
            t0 = time.perf_counter()
            rep = api.encode_report(img, mode, a.level, model=a.model)
            seconds = time.perf_counter() - t0
            with mock.patch.object(X, "supports", lambda model: False):
                float_rep = api.encode_report(img, mode, a.level, model=a.model)
            row = {"image": f.stem, "mode": mode, "exact_bytes": len(rep["data"]), "float_bytes": len(float_rep["data"]),
                   "exact_psnr": psnr(rep["recon"], img), "float_psnr": psnr(float_rep["recon"], img),
                   "exact_encode_s": seconds}
            machines = {"two_threads": lambda: coding_threads(2),
                        "onednn_off": lambda: torch.backends.mkldnn.flags(enabled=False)}
            for name, machine in machines.items():
                row[f"exact_{name}"] = _decodes(rep["data"], a.model, img, machine())
                row[f"float_{name}"] = _decodes(float_rep["data"], a.model, img, machine())
            rows.append(row)
            note(f"{f.stem} {mode}: {row['float_bytes']} -> {row['exact_bytes']} bytes, PSNR {row['float_psnr']:.3f} -> "
                 f"{row['exact_psnr']:.3f}; oneDNN off: exact {row['exact_onednn_off']}, float {row['float_onednn_off']}")
    summary = {}
    for mode in modes:
        rs = [r for r in rows if r["mode"] == mode]
        ok = lambda key: sum(isinstance(r[key], float) for r in rs)  # noqa: E731
        summary[mode] = {
            "extra_bytes_percent": 100 * (sum(r["exact_bytes"] for r in rs) / sum(r["float_bytes"] for r in rs) - 1),
            "exact_psnr": float(np.mean([r["exact_psnr"] for r in rs])),
            "float_psnr": float(np.mean([r["float_psnr"] for r in rs])),
            "images": len(rs),
            **{f"{p}_{n}_decoded": ok(f"{p}_{n}") for p in ("exact", "float") for n in ("two_threads", "onednn_off")},
        }
        s = summary[mode]
        note(f"{mode}: exact tables {s['extra_bytes_percent']:+.3f} % bytes, PSNR {s['float_psnr']:.3f} -> {s['exact_psnr']:.3f} dB; "
             f"decoded with oneDNN off: exact {s['exact_onednn_off_decoded']}/{len(rs)}, float {s['float_onednn_off_decoded']}/{len(rs)}")
    doc = {"meta": {**stamp(full_argv), "model": a.model, "level": a.level, "notes": notes}, "summary": summary, "rows": rows}
    name = "exact_cost.json" if a.model == "selfvae-downscale" else f"exact_cost-{Path(a.model).stem}.json"
    (out / name).write_text(json.dumps(to_jsonable(doc), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
