"""Kodak rate-distortion benchmark: classic codecs (+ selfcodec) in one run.

    python -m benchmarks.kodak_rd [--quick] [--data DIR] [--out benchmarks/results]
                                  [--anchors PATH | --no-anchors] [--no-selfcodec]
                                  [--codecs jpeg420,webp,...] [--images N] [--crop N]

Per image and sweep point: bpp from whole-file bytes, PSNR-RGB, MS-SSIM-RGB,
encode/decode seconds.  Per sweep point the metrics are averaged over the
images (bpp and PSNR averaged separately, as CompressAI does).  BD-rate (PSNR)
of every codec is computed against JPEG 4:2:0 from the same run.

Outputs in --out: ``kodak.json``, ``kodak.md`` (headline table) and
``kodak_rd.png`` (PSNR vs bpp; this run solid, anchors.md curves dashed).
``--quick``: 2 images centre-cropped to 128x128, 3 sweep points per codec.

selfcodec is plugged in as more codecs ``selfcodec-<mode>`` through the public
API ``selfcodec.api.encode(img, mode=, level=, model=None) -> bytes`` /
``decode(data, as_array=True)`` with ``MODES`` and ``LEVELS``; if the module is
missing it is skipped with a printed note.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from selfcodec import metrics as M

from . import anchors as A
from . import baselines as B
from .common import (DEFAULT_KODAK, DEFAULT_OUT, center_crop, fmt, interp_at, list_pngs,
                     load_rgb, load_selfcodec_api, stamp, to_jsonable)

try:
    from tqdm import tqdm
except Exception:  # pragma: no cover
    tqdm = None

REFERENCE = "jpeg420"
TARGET_BPPS = (0.25, 0.5, 1.0)
QUICK_CROP = 128
QUICK_IMAGES = 2


# ----------------------------------------------------------------------------
# selfcodec as a codec
# ----------------------------------------------------------------------------

def _pick3(levels: list) -> list:
    if len(levels) <= 3:
        return list(levels)
    return [levels[0], levels[len(levels) // 2], levels[-1]]


def _decode(api, data, model=None):
    if model is None:
        return api.decode(data, as_array=True)
    return api.decode(data, model=model, as_array=True)


def selfcodec_codecs(api, quick: bool = False, model=None) -> list[B.Codec]:
    """One :class:`baselines.Codec` per lossy selfcodec mode (sweep = ``api.LEVELS``)."""
    modes = [m for m in getattr(api, "MODES", []) if m != "lossless"]
    levels = list(getattr(api, "LEVELS", []))
    out = []
    for mode in modes:
        def fn(img, q, _mode=mode):
            return B._timed(lambda: api.encode(img, mode=_mode, level=int(q), model=model),
                            lambda d: _decode(api, d, model))
        out.append(B.Codec(f"selfcodec-{mode}", f"selfcodec {mode}", fn, "level", levels, _pick3(levels),
                           f"selfcodec.api.encode(mode={mode!r}, level=q)"))
    return out


def selfcodec_points(img: np.ndarray, api=None, modes=None, levels=None, model=None) -> list[dict]:
    """Encode/decode ``img`` with every selfcodec mode and level; one dict per point
    (mode, level, bytes, bpp, psnr, ms_ssim, enc_s, dec_s).  Raises ImportError if
    ``selfcodec.api`` is not available."""
    if api is None:
        api, note = load_selfcodec_api()
        if api is None:
            raise ImportError(note)
    modes = modes or [m for m in api.MODES if m != "lossless"]
    levels = levels or list(api.LEVELS)
    h, w = img.shape[:2]
    pts = []
    for mode in modes:
        for lv in levels:
            t0 = time.perf_counter()
            data = api.encode(img, mode=mode, level=int(lv), model=model)
            t1 = time.perf_counter()
            dec = np.asarray(_decode(api, data, model))
            t2 = time.perf_counter()
            pts.append({"mode": mode, "level": lv, "bytes": len(data), "bpp": M.bpp(len(data), h, w),
                        "psnr": M.psnr(img, dec), "ms_ssim": M.ms_ssim(img, dec),
                        "enc_s": t1 - t0, "dec_s": t2 - t1})
    return pts


# ----------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------

def _msssim_db(v):
    v = np.asarray(v, dtype=float)
    return -10.0 * np.log10(np.clip(1.0 - v, 1e-10, None))


def run_codecs(images: list[tuple[str, np.ndarray]], codecs: list[B.Codec], quick: bool,
               progress: bool = True) -> dict:
    """Run every codec over every image and sweep point.  Returns per-codec records."""
    total = sum(len(c.quick_sweep if quick else c.sweep) for c in codecs) * len(images)
    bar = tqdm(total=total, desc="kodak_rd", unit="pt", disable=not progress, file=sys.stderr) \
        if tqdm else None
    res: dict[str, dict] = {}
    for c in codecs:
        res[c.name] = {"per_image": [], "errors": []}
    dead: set[str] = set()
    for name, img in images:
        h, w = img.shape[:2]
        for c in codecs:
            sweep = c.quick_sweep if quick else c.sweep
            if c.name in dead:
                if bar:
                    bar.update(len(sweep))
                continue
            for q in sweep:
                if bar:
                    bar.set_postfix_str(f"{name} {c.name} {q}", refresh=False)
                try:
                    data, dec, te, td = c.run(img, q)
                    if dec.shape != img.shape:
                        raise RuntimeError(f"decoded shape {dec.shape} != {img.shape}")
                    res[c.name]["per_image"].append({
                        "image": name, "param": q, "bytes": len(data), "h": h, "w": w,
                        "bpp": M.bpp(len(data), h, w), "psnr": M.psnr(img, dec),
                        "ms_ssim": M.ms_ssim(img, dec), "enc_s": te, "dec_s": td,
                    })
                except Exception as e:
                    msg = f"{c.name} q={q} on {name}: {e!r}"
                    if not res[c.name]["errors"]:
                        print(f"[kodak_rd] ERROR {msg}", file=sys.stderr)
                    res[c.name]["errors"].append(msg)
                if bar:
                    bar.update(1)
            if not res[c.name]["per_image"] and len(res[c.name]["errors"]) >= len(sweep):
                dead.add(c.name)  # failed at every point of the first image: stop trying
                print(f"[kodak_rd] {c.name} failed on every sweep point of {name}: skipping it for the "
                      f"remaining images", file=sys.stderr)
    if bar:
        bar.close()
    return res


def aggregate(codec: B.Codec, rec: dict, quick: bool, n_images: int) -> dict:
    sweep = codec.quick_sweep if quick else codec.sweep
    points = []
    for q in sweep:
        rows = [r for r in rec["per_image"] if r["param"] == q]
        if not rows:
            continue
        px = sum(r["h"] * r["w"] for r in rows)
        te = sum(r["enc_s"] for r in rows)
        td = sum(r["dec_s"] for r in rows)
        points.append({
            "param": q, "n_images": len(rows),
            "bpp": float(np.mean([r["bpp"] for r in rows])),
            "psnr": float(np.mean([r["psnr"] for r in rows])),
            "ms_ssim": float(np.mean([r["ms_ssim"] for r in rows])),
            "enc_s": te / len(rows), "dec_s": td / len(rows),
            "enc_mpix_s": px / 1e6 / te if te > 0 else None,
            "dec_mpix_s": px / 1e6 / td if td > 0 else None,
        })
    points.sort(key=lambda p: p["bpp"])
    allr = rec["per_image"]
    px = sum(r["h"] * r["w"] for r in allr)
    te = sum(r["enc_s"] for r in allr)
    td = sum(r["dec_s"] for r in allr)
    timing = {
        "n_codings": len(allr),
        "enc_s_per_image": te / len(allr) if allr else None,
        "dec_s_per_image": td / len(allr) if allr else None,
        "enc_mpix_s": px / 1e6 / te if te > 0 else None,
        "dec_mpix_s": px / 1e6 / td if td > 0 else None,
        "note": "mean over all images and sweep points; wall clock, single process",
    }
    complete = all(p["n_images"] == n_images for p in points) and len(points) == len(sweep)
    return {
        "label": codec.label, "param_name": codec.param, "settings": codec.settings,
        "sweep": list(sweep), "points": points, "timing": timing,
        "complete": complete, "errors": rec["errors"][:20], "n_errors": len(rec["errors"]),
        "per_image": allr,
    }


def add_bd(codecs: dict, ref: str = REFERENCE) -> None:
    r = codecs.get(ref)
    for name, c in codecs.items():
        pts = c["points"]
        c["psnr_at_bpp"] = {str(t): interp_at([p["bpp"] for p in pts], [p["psnr"] for p in pts], t)
                            for t in TARGET_BPPS}
        if r is None or not r["points"]:
            c["bd_rate_vs_jpeg420_pct"] = c["bd_psnr_vs_jpeg420_db"] = None
            c["bd_rate_msssim_vs_jpeg420_pct"] = None
            continue
        rb = [p["bpp"] for p in r["points"]]
        rp = [p["psnr"] for p in r["points"]]
        rm = _msssim_db([p["ms_ssim"] for p in r["points"]])
        cb = [p["bpp"] for p in pts]
        c["bd_rate_vs_jpeg420_pct"] = M.bd_rate(rb, rp, cb, [p["psnr"] for p in pts])
        c["bd_psnr_vs_jpeg420_db"] = M.bd_psnr(rb, rp, cb, [p["psnr"] for p in pts])
        c["bd_rate_msssim_vs_jpeg420_pct"] = M.bd_rate(rb, rm, cb, _msssim_db([p["ms_ssim"] for p in pts]))


def anchors_block(text: str | None, codecs: dict) -> dict:
    if text is None:
        return {}
    curves = A.lossy_curves(text)
    ref = codecs.get(REFERENCE)
    for c in curves.values():
        c["psnr_at_bpp"] = {str(t): interp_at(c["bpp"], c["psnr"], t) for t in TARGET_BPPS}
        if ref and ref["points"]:
            c["bd_rate_vs_our_jpeg420_pct"] = M.bd_rate([p["bpp"] for p in ref["points"]],
                                                        [p["psnr"] for p in ref["points"]],
                                                        c["bpp"], c["psnr"])
        else:
            c["bd_rate_vs_our_jpeg420_pct"] = None
    return curves


# ----------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------

def plot(result: dict, path: Path, xmax: float = 2.2) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(12, 7.5))
    ys = []
    cmap = plt.get_cmap("tab10")
    for i, (name, c) in enumerate(result["codecs"].items()):
        pts = [p for p in c["points"] if p["bpp"] <= xmax * 1.05]
        if not pts:
            continue
        x, y = [p["bpp"] for p in pts], [p["psnr"] for p in pts]
        ys += y
        lw = 2.6 if name.startswith("selfcodec") else 1.8
        ax.plot(x, y, "-o", ms=4, lw=lw, color=cmap(i % 10), label=f"{c['label']} (this run)")
    acol = plt.get_cmap("Dark2")
    dashes = [(5, 2), (2, 1.5), (7, 2, 1.5, 2), (3, 3), (9, 3)]
    j = -1
    for key, c in (result.get("anchors") or {}).items():
        if c.get("kind") != "mse":
            continue
        j += 1
        pts = [(b, p) for b, p in zip(c["bpp"], c["psnr"]) if b <= xmax * 1.05]
        if len(pts) < 2:
            continue
        x, y = zip(*pts)
        ys += list(y)
        ax.plot(x, y, "--", dashes=dashes[j // 8 % len(dashes)], lw=1.3, marker=".", ms=3, color=acol(j % 8),
                label=f"{c['label']} (published)")
    ax.set_xlim(0, xmax)
    if ys:
        ax.set_ylim(max(15.0, min(ys) - 1), max(ys) + 1)
    ax.set_xlabel("bits per pixel (whole file; published curves: coded strings only)")
    ax.set_ylabel("PSNR-RGB [dB]")
    meta = result["meta"]
    ax.set_title(f"Kodak ({meta['n_images']} images{', quick' if meta['quick'] else ''}) — "
                 f"{meta['date'][:10]}, {meta['cpu_model']}", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(result: dict) -> str:
    meta = result["meta"]
    L = [f"# Kodak rate-distortion{' (quick)' if meta['quick'] else ''}", "",
         f"- date: {meta['date']}",
         f"- machine: {meta['platform']['machine']}, {meta['cpu_model']} "
         f"({meta['cpus_available']} CPUs available, load at start {meta.get('loadavg_at_start')})",
         f"- command: `{meta['command']}`",
         f"- images: {meta['n_images']} from `{meta['data_dir']}`"
         + (f", centre-cropped to {meta['crop']}x{meta['crop']}" if meta.get("crop") else ""),
         "- bpp = 8 x whole-file bytes / pixels; PSNR over RGB per image, then averaged with bpp.",
         "- BD-rate (PSNR, cubic, overlapping range) vs JPEG 4:2:0 from this run; negative = fewer bits.",
         "- PSNR at a bpp: linear in log-bpp between measured points, — outside the measured range.", "",
         "| codec | BD-rate vs JPEG 4:2:0 | BD-PSNR | BD-rate (MS-SSIM dB) | PSNR @0.25 | PSNR @0.5 | PSNR @1.0 "
         "| enc s/img | dec s/img | enc MP/s | dec MP/s |",
         "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, c in result["codecs"].items():
        t = c["timing"]
        pa = c["psnr_at_bpp"]
        L.append(f"| {c['label']} | {fmt(c['bd_rate_vs_jpeg420_pct'], 1, ' %')} | "
                 f"{fmt(c['bd_psnr_vs_jpeg420_db'], 2, ' dB')} | {fmt(c['bd_rate_msssim_vs_jpeg420_pct'], 1, ' %')} | "
                 f"{fmt(pa['0.25'])} | {fmt(pa['0.5'])} | {fmt(pa['1.0'])} | "
                 f"{fmt(t['enc_s_per_image'], 3)} | {fmt(t['dec_s_per_image'], 3)} | "
                 f"{fmt(t['enc_mpix_s'], 1)} | {fmt(t['dec_mpix_s'], 1)} |")
    if result.get("selfcodec_vs_webp"):
        L += ["", "Time relative to WebP in the same run (per image, mean over sweep points):", ""]
        for k, v in result["selfcodec_vs_webp"].items():
            L.append(f"- {k}: encode x{fmt(v['enc_ratio'], 1)}, decode x{fmt(v['dec_ratio'], 1)}")
    anc = result.get("anchors") or {}
    if anc:
        L += ["", f"## Published curves (anchors.md, `{meta.get('anchors_path')}`)", "",
              "Their bpp counts coded strings only (no header); BD-rate against *our* JPEG 4:2:0 run.", "",
              "| method | BD-rate vs our JPEG 4:2:0 | PSNR @0.25 | PSNR @0.5 | PSNR @1.0 |", "|---|---|---|---|---|"]
        for c in anc.values():
            if c.get("kind") != "mse":
                continue
            pa = c["psnr_at_bpp"]
            L.append(f"| {c['label']} (published) | {fmt(c['bd_rate_vs_our_jpeg420_pct'], 1, ' %')} | "
                     f"{fmt(pa['0.25'])} | {fmt(pa['0.5'])} | {fmt(pa['1.0'])} |")
    if result.get("notes"):
        L += ["", "## Notes", ""] + [f"- {n}" for n in result["notes"]]
    return "\n".join(L) + "\n"


# ----------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.kodak_rd", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2 images cropped to 128x128, 3 sweep points per codec")
    p.add_argument("--data", default=str(DEFAULT_KODAK), help="folder of PNGs (default: ../shared/data/kodak)")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="output folder (default: benchmarks/results)")
    p.add_argument("--anchors", default=str(A.DEFAULT_ANCHORS), help="anchors.md with published curves")
    p.add_argument("--no-anchors", action="store_true", help="do not read anchors.md")
    p.add_argument("--no-selfcodec", action="store_true", help="do not try selfcodec.api")
    p.add_argument("--model", default=None, help="model passed to selfcodec.api.encode/decode (name or path)")
    p.add_argument("--codecs", default="", help="comma-separated subset of codec names")
    p.add_argument("--images", type=int, default=0, help="use only the first N images")
    p.add_argument("--crop", type=int, default=0, help="centre-crop images to NxN (quick: 128)")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    full_argv = [sys.argv[0]] + (list(argv) if argv is not None else sys.argv[1:])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []

    def note(msg):
        print(f"[kodak_rd] {msg}", file=sys.stderr)
        notes.append(msg)

    files = list_pngs(args.data)
    n_img = args.images or (QUICK_IMAGES if args.quick else 0)
    if n_img:
        files = files[:n_img]
    crop = args.crop or (QUICK_CROP if args.quick else 0)
    images = []
    for f in files:
        img = load_rgb(f)
        images.append((f.stem, center_crop(img, crop) if crop else img))

    codecs = B.lossy_codecs()
    api, msg = load_selfcodec_api(args.no_selfcodec)
    note(msg)
    if api is not None:
        try:
            codecs += selfcodec_codecs(api, args.quick, model=args.model)
        except Exception as e:
            note(f"selfcodec skipped: could not build its sweep ({e!r})")
    if args.codecs:
        want = {s.strip() for s in args.codecs.split(",") if s.strip()}
        want.add(REFERENCE)
        codecs = [c for c in codecs if c.name in want]
    skipped = []
    for c in codecs:
        if not c.available:
            note(f"codec {c.name} skipped: {c.reason}")
            skipped.append({"codec": c.name, "reason": c.reason})
        elif c.reason:
            note(f"codec {c.name}: {c.reason}")
    codecs = [c for c in codecs if c.available]

    t0 = time.perf_counter()
    recs = run_codecs(images, codecs, args.quick, progress=not args.no_progress)
    wall = time.perf_counter() - t0

    agg = {c.name: aggregate(c, recs[c.name], args.quick, len(images)) for c in codecs}
    for name, c in agg.items():
        if c["n_errors"]:
            note(f"codec {name}: {c['n_errors']} coding errors, first: {c['errors'][0]}")
    add_bd(agg)

    anchors_text = None
    if args.no_anchors:
        note("anchors not read (--no-anchors)")
    else:
        anchors_text, amsg = A.load(args.anchors)
        note(amsg)

    meta = stamp(full_argv, B.versions())
    meta.update({
        "quick": bool(args.quick), "data_dir": str(Path(args.data).resolve()),
        "n_images": len(images), "crop": crop or None,
        "images": [{"name": n, "h": int(i.shape[0]), "w": int(i.shape[1])} for n, i in images],
        "anchors_path": None if anchors_text is None else str(Path(args.anchors).resolve()),
        "wall_s": wall, "reference_codec": REFERENCE,
        "target_bpps": list(TARGET_BPPS),
        "metrics": "psnr: RGB MSE over all subpixels, capped at 100 dB; ms_ssim: 5-scale RGB per-channel mean "
                   "(fewer scales on small images); bpp: whole-file bytes",
    })
    result = {"meta": meta, "codecs": agg, "skipped": skipped,
              "anchors": anchors_block(anchors_text, agg), "notes": notes}
    webp = agg.get("webp")
    ratios = {}
    if webp and webp["timing"]["enc_s_per_image"]:
        for name, c in agg.items():
            if name.startswith("selfcodec") and c["timing"]["enc_s_per_image"]:
                ratios[name] = {
                    "enc_ratio": c["timing"]["enc_s_per_image"] / webp["timing"]["enc_s_per_image"],
                    "dec_ratio": c["timing"]["dec_s_per_image"] / webp["timing"]["dec_s_per_image"],
                }
    result["selfcodec_vs_webp"] = ratios

    (out / "kodak.json").write_text(json.dumps(to_jsonable(result), indent=1))
    (out / "kodak.md").write_text(markdown(result))
    plot(result, out / "kodak_rd.png")

    print(f"[kodak_rd] {len(images)} images, {len(codecs)} codecs, {wall:.1f} s; wrote {out}/kodak.json, "
          f"kodak.md, kodak_rd.png", file=sys.stderr)
    for name, c in agg.items():
        bd = c["bd_rate_vs_jpeg420_pct"]
        t = c["timing"]
        print(f"  {name:22s} BD-rate vs jpeg420 {fmt(bd, 1, ' %'):>9s}   "
              f"enc {fmt(t['enc_s_per_image'], 3)} s  dec {fmt(t['dec_s_per_image'], 3)} s per image")
    return result


if __name__ == "__main__":
    main()
