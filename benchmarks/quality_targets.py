"""Fractional levels and target sizes on Kodak: do the levels between the trained ones stay on
their rate-quality curve, and how close does --target-size come to its target?

    python -m benchmarks.quality_targets [--images 8] [--mode rec2] [--fractions 1.5,2.5,...]
                                         [--target-bpps 0.25,0.5,1.0] [--model NAME] [--out benchmarks/results]

(1) Every image at every whole level of the model and at the fractional levels: mean bpp and PSNR
per level, each fractional point's distance in dB from the whole levels' curve (PSNR interpolated
in log-rate at its bpp), and the BD-rate of the fractional points against that curve.
(2) For each image and each target (bpp over the image, as bytes), encode(target_size=...): the
file's |bytes - target| / target, how many within 3 %, and the probes (encodes) each took.
Writes quality_targets.json.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np

from selfcodec import api, metrics, zoo
from selfcodec.codec import modes as M
from selfcodec.codec import targets as T
from selfcodec.errors import TargetMissedWarning

from .common import DEFAULT_KODAK, DEFAULT_OUT, interp_at, list_images, load_rgb, stamp, start_run, to_jsonable


def _curve(rows: list, key: str) -> list:
    """Mean bpp and PSNR over the images per level of `rows[i][key]`."""
    levels = sorted({float(lv) for r in rows for lv in r[key]})
    return [{"level": lv, "bpp": float(np.mean([r[key][lv]["bpp"] for r in rows])),
             "psnr": float(np.mean([r[key][lv]["psnr"] for r in rows]))} for lv in levels]


def target_summary(hits: list, top: int) -> dict:
    """How close the target sizes came: all of them, and those inside the range of the model's
    levels (a target above the top level's file, or below the bottom one's, cannot be hit)."""
    errors = np.array([h["error"] for h in hits])
    inside = np.array([not ((h["level"] == top and h["bytes"] < h["target_bytes"])
                            or (h["level"] == 1 and h["bytes"] > h["target_bytes"])) for h in hits])
    return {"target_hits": len(hits), "target_within_3pct": int(np.sum(errors <= 0.03)),
            "target_met_under": int(sum(h["met"] for h in hits)),
            "target_error_mean_pct": float(100 * errors.mean()), "target_error_median_pct": float(100 * np.median(errors)),
            "target_error_max_pct": float(100 * errors.max()),
            "target_probes_mean": float(np.mean([h["probes"] for h in hits])),
            "target_in_range": int(inside.sum()), "target_in_range_within_3pct": int(np.sum(errors[inside] <= 0.03)),
            "target_in_range_error_max_pct": float(100 * errors[inside].max()) if inside.any() else None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(DEFAULT_KODAK))
    ap.add_argument("--images", type=int, default=8, help="the first N images (0: all)")
    ap.add_argument("--mode", default="rec2")
    ap.add_argument("--model", default=None, help="default: the mode's default model")
    ap.add_argument("--fractions", default="1.5,2.5,3.5,4.5,5.5,6.5", help="fractional levels to measure")
    ap.add_argument("--target-bpps", default="0.25,0.5,1.0", help="targets, in bpp of each image")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    a = ap.parse_args(argv)
    full_argv, out, notes, note = start_run("quality_targets", a.out, argv)
    model = a.model or zoo.default_for(a.mode)
    net, digest, _ = zoo.load(model)
    top = M.level_count(net)
    fractions = [float(v) for v in a.fractions.split(",") if v and float(v) < top]
    bpps = [float(v) for v in a.target_bpps.split(",") if v]
    files = list_images(a.data)
    files = files[:a.images] if a.images else files
    rows, hits = [], []
    t0 = time.perf_counter()
    for f in files:
        img = load_rgb(f)
        px = img.shape[0] * img.shape[1]
        row = {"image": f.stem, "whole": {}, "fractional": {}}
        for key, levels in (("whole", range(1, top + 1)), ("fractional", fractions)):
            for lv in levels:
                rep = api.encode_report(img, a.mode, lv, model=model)
                row[key][float(lv)] = {"bytes": len(rep["data"]), "bpp": 8 * len(rep["data"]) / px,
                                       "psnr": T.psnr(rep["recon"], img)}
        rows.append(row)
        for bpp in bpps:
            target = int(bpp * px / 8)
            with warnings.catch_warnings(record=True) as missed:
                warnings.simplefilter("always", TargetMissedWarning)
                rep = api.encode_report(img, a.mode, model=model, target_size=target)
            size = len(rep["data"])
            hits.append({"image": f.stem, "target_bpp": bpp, "target_bytes": target, "bytes": size,
                         "level": float(rep["level"]), "probes": len(rep["aim"].probes), "met": rep["aim"].met,
                         "error": abs(size - target) / target, "missed": [str(w.message) for w in missed]})
        note(f"{f.stem}: " + ", ".join(f"{h['target_bytes']}->{h['bytes']} ({100 * h['error']:.2f} %, "
                                        f"{h['probes']} probes)" for h in hits[-len(bpps):]))
    whole, frac = _curve(rows, "whole"), _curve(rows, "fractional")
    for p in frac:
        on_curve = interp_at([q["bpp"] for q in whole], [q["psnr"] for q in whole], p["bpp"])
        p["db_from_whole_curve"] = None if on_curve is None else p["psnr"] - on_curve
    gaps = [p["db_from_whole_curve"] for p in frac if p["db_from_whole_curve"] is not None]
    bd = metrics.bd_rate([q["bpp"] for q in whole], [q["psnr"] for q in whole],
                         [p["bpp"] for p in frac], [p["psnr"] for p in frac])
    summary = {
        "fractional_bd_rate_vs_whole_pct": bd,
        "fractional_db_from_whole_curve_mean": float(np.mean(gaps)) if gaps else None,
        "fractional_db_from_whole_curve_min": float(np.min(gaps)) if gaps else None,
        "fractional_db_from_whole_curve_max": float(np.max(gaps)) if gaps else None,
        **target_summary(hits, top),
        "seconds": time.perf_counter() - t0,
    }
    note(f"fractional levels vs the whole levels' curve: BD-rate {bd:+.2f} %, PSNR off the curve "
         f"{summary['fractional_db_from_whole_curve_mean']:+.3f} dB on average "
         f"({summary['fractional_db_from_whole_curve_min']:+.3f} to {summary['fractional_db_from_whole_curve_max']:+.3f})")
    note(f"target sizes: {summary['target_within_3pct']} of {len(hits)} within 3 % "
         f"(mean {summary['target_error_mean_pct']:.2f} %, max {summary['target_error_max_pct']:.2f} %), "
         f"{summary['target_met_under']} at or under the target, {summary['target_probes_mean']:.1f} encodes each; "
         f"of the {summary['target_in_range']} inside the levels' range {summary['target_in_range_within_3pct']} within 3 %")
    doc = {"meta": {**stamp(full_argv), "model": str(model), "model_hash": digest.hex(), "mode": a.mode, "levels": top, "notes": notes},
           "summary": summary, "whole_levels": whole, "fractional_levels": frac, "targets": hits,
           "images": rows}
    (out / "quality_targets.json").write_text(json.dumps(to_jsonable(doc), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
