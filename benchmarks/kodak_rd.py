"""Kodak rate-distortion benchmark: classic codecs and selfcodec in one run.

    python -m benchmarks.kodak_rd [--quick] [--data DIR] [--out benchmarks/results] [--model PATH]
                                  [--workers N] [--anchors PATH | --no-anchors] [--no-selfcodec]
                                  [--codecs jpeg420,webp,...] [--images N] [--crop N]
                                  [--search STEPS [--search-levels 1,3,5]]

Per image and sweep point: bpp from whole-file bytes, PSNR-RGB, MS-SSIM-RGB,
encode/decode seconds.  Per sweep point the metrics are averaged over the
images (bpp and PSNR averaged separately, as CompressAI does).  BD-rate (PSNR)
of every codec is computed against JPEG 4:2:0 from the same run.

selfcodec: every lossy mode (``api.MODES`` minus lossless) at every level
(``api.LEVELS``) on every image, through ``selfcodec.api.encode_report``.  The
RD point comes from the encoder-predicted reconstruction ``recon``, which is
bit-identical to what the decoder returns (the file carries its CRC and the
decoder checks it).  The real decoder is run, timed and compared with ``recon``
at ``api.DEFAULT_LEVEL`` for every mode and image: that gives the decode
seconds.  Also: per-stream model estimate vs real bytes (summed over the
images) per mode and level, and a best-of-modes curve (the upper convex hull of the
per-(mode, level) averages; their Pareto front and its BD-rate beside it).  ``--search STEPS`` adds ``rec2-searchSTEPS``: rec2 with the
encoder-side latent search (``encode --search``), a slower encoder whose files the same
decoder reads; best of modes then includes it.

The work runs in ``--workers`` processes (default: one per available CPU, torch
with one thread each); seconds are measured inside the workers, for WebP and
selfcodec alike.

Outputs in --out: ``kodak.json``, ``kodak.md`` (headline table) and
``kodak_rd.png`` (PSNR vs bpp; this run solid, anchors.md curves dashed).
``--quick``: 2 images centre-cropped to 128x128, 3 sweep points per codec
(selfcodec: 3 levels per mode), one worker.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from selfcodec import metrics as M

from . import anchors as A
from . import baselines as B
from .common import (DEFAULT_KODAK, DEFAULT_OUT, fmt, interp_at, list_images,
                     load_selfcodec_api, load_images, stamp, start_run, to_jsonable,
                     usable_codecs)

try:
    from tqdm import tqdm
except Exception:  # pragma: no cover
    tqdm = None

REFERENCE = "jpeg420"
TARGET_BPPS = (0.25, 0.5, 1.0)
QUICK_CROP = 128
QUICK_IMAGES = 2
BEST = "selfcodec-best"


# ----------------------------------------------------------------------------
# selfcodec
# ----------------------------------------------------------------------------

def _pick3(levels: list) -> list:
    if len(levels) <= 3:
        return list(levels)
    return [levels[0], levels[len(levels) // 2], levels[-1]]


def selfcodec_plan(api, quick: bool = False) -> tuple[list, list, int]:
    """(lossy modes, levels to run, level at which the real decoder runs)."""
    modes = [m for m in api.MODES if m != "lossless"]
    levels = list(api.LEVELS)
    default = getattr(api, "DEFAULT_LEVEL", levels[len(levels) // 2])
    if quick:
        levels = sorted(set(_pick3(levels)) | {default})
    return modes, levels, default


SEARCH_PREFIX = "rec2-search"


def split_mode(mode: str) -> tuple[str, int]:
    """'rec2-search10' -> ('rec2', 10): the api mode and its latent-search steps."""
    if mode.startswith(SEARCH_PREFIX):
        return "rec2", int(mode[len(SEARCH_PREFIX):])
    return mode, 0


def selfcodec_job(api, name: str, img: np.ndarray, mode: str, levels: list, dec_level, model=None) -> list[dict]:
    """Code ``img`` with one mode at every level; one record per level.  At ``dec_level`` the real
    decoder runs too (timed, and checked to equal the encoder's prediction)."""
    h, w = img.shape[:2]
    rows = []
    api_mode, search = split_mode(mode)
    extra = {"search": search} if search else {}  # (an api without the search need not take the argument)
    for lv in levels:
        t0 = time.perf_counter()
        rep = api.encode_report(img, mode=api_mode, level=int(lv), model=model, **extra)
        te = time.perf_counter() - t0
        data, rec = rep["data"], np.asarray(rep["recon"])
        row = {"image": name, "param": lv, "bytes": len(data), "h": h, "w": w,
               "bpp": M.bpp(len(data), h, w), "psnr": M.psnr(img, rec), "ms_ssim": M.ms_ssim(img, rec),
               "enc_s": te, "dec_s": None, "decoded": False,
               "streams": {k: {"bytes": int(v["bytes"]), "estimated_bits": float(v["estimated_bits"])}
                           for k, v in rep["streams"].items()}}
        if lv == dec_level:
            t1 = time.perf_counter()
            dec = np.asarray(api.decode(data, model=model, as_array=True))
            row["dec_s"] = time.perf_counter() - t1
            row["decoded"] = True
            row["decode_matches_recon"] = bool(dec.shape == rec.shape and np.array_equal(dec, rec))
        rows.append(row)
    return rows


def pareto_front(points: list[dict]) -> list[dict]:
    """Points not beaten by another one with fewer-or-equal bits and a higher PSNR (bpp ascending)."""
    front, best = [], -np.inf
    for p in sorted(points, key=lambda p: (p["bpp"], -p["psnr"])):
        if p["psnr"] > best:
            front.append(p)
            best = p["psnr"]
    return front


def upper_hull(points: list[dict]) -> list[dict]:
    """The upper-left convex hull (in bpp, PSNR) of the Pareto front."""
    hull: list[dict] = []
    for p in pareto_front(points):
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            cross = (b["bpp"] - a["bpp"]) * (p["psnr"] - a["psnr"]) - (b["psnr"] - a["psnr"]) * (p["bpp"] - a["bpp"])
            if cross >= 0:  # b lies on or below the chord a-p
                hull.pop()
            else:
                break
        hull.append(p)
    return hull


def stream_accounting(rows: list[dict]) -> dict:
    """Per level: per stream, real bytes and estimated bits summed over the images."""
    out = {}
    for lv in sorted({r["param"] for r in rows}):
        rs = [r for r in rows if r["param"] == lv]
        streams = {}
        for k in rs[0]["streams"]:
            real = sum(r["streams"][k]["bytes"] for r in rs)
            est = sum(r["streams"][k]["estimated_bits"] for r in rs)
            rel = (8.0 * real / est - 1.0) * 100.0 if est > 0 else None
            streams[k] = {"real_bytes": real, "estimated_bytes": est / 8.0, "estimated_bits": est,
                          "real_over_estimate_pct": rel,
                          "within_1pct": None if rel is None else bool(abs(rel) <= 1.0)}
        total = sum(r["bytes"] for r in rs)
        payload = sum(s["real_bytes"] for s in streams.values())
        out[str(lv)] = {"n_images": len(rs), "streams": streams, "file_bytes": total,
                        "container_overhead_bytes": total - payload}
    return out


# ----------------------------------------------------------------------------
# Running (in-process or in worker processes)
# ----------------------------------------------------------------------------

_W: dict = {}  # per-process state: images, codecs, api, model


def _init_worker(images, codec_names, use_selfcodec: bool, model, threads: int):
    if threads:
        try:
            import torch
            torch.set_num_threads(threads)
        except Exception:
            pass
    _W["images"] = images
    _W["codecs"] = {c.name: c for c in B.lossy_codecs() if c.name in codec_names}
    _W["api"] = load_selfcodec_api()[0] if use_selfcodec else None
    _W["model"] = model


def _run_job(job: tuple) -> tuple:
    """job = ("base", image index, codec name, sweep) or ("sc", image index, mode, levels, decode level).
    Returns (job, rows, errors)."""
    kind, idx = job[0], job[1]
    cpu0 = time.process_time()
    name, img = _W["images"][idx]
    h, w = img.shape[:2]
    rows, errors = [], []
    if kind == "base":
        codec, sweep = _W["codecs"][job[2]], job[3]
        for q in sweep:
            try:
                data, dec, te, td = codec.run(img, q)
                if dec.shape != img.shape:
                    raise RuntimeError(f"decoded shape {dec.shape} != {img.shape}")
                rows.append({"image": name, "param": q, "bytes": len(data), "h": h, "w": w,
                             "bpp": M.bpp(len(data), h, w), "psnr": M.psnr(img, dec),
                             "ms_ssim": M.ms_ssim(img, dec), "enc_s": te, "dec_s": td})
            except Exception as e:
                errors.append(f"{codec.name} q={q} on {name}: {e!r}")
    else:
        mode, levels, dec_level = job[2], job[3], job[4]
        try:
            rows = selfcodec_job(_W["api"], name, img, mode, levels, dec_level, _W["model"])
        except Exception as e:
            errors.append(f"selfcodec-{mode} on {name}: {e!r}")
    if rows:  # CPU seconds of the whole job (codings and metrics), for run-time estimates on a busy machine
        rows[0]["job_cpu_s"] = time.process_time() - cpu0
    return job, rows, errors


def _job_codec(job) -> str:
    return job[2] if job[0] == "base" else f"selfcodec-{job[2]}"


def _job_points(job) -> int:
    return len(job[3])


def run_jobs(images, codecs: list[B.Codec], sc_modes: list, sc_levels: dict, dec_level, model, quick: bool,
             workers: int, threads: int, progress: bool = True) -> dict:
    """Run every job (sc_levels: the levels of each selfcodec mode); returns
    {codec name: {"per_image": [...], "errors": [...]}} in a fixed order."""
    jobs = []
    for m in sc_modes:  # the long jobs first, so that the workers finish together
        jobs += [("sc", i, m, list(sc_levels[m]), dec_level) for i in range(len(images))]
    for c in codecs:
        jobs += [("base", i, c.name, list(c.quick_sweep if quick else c.sweep)) for i in range(len(images))]
    names = [c.name for c in codecs] + [f"selfcodec-{m}" for m in sc_modes]
    res = {n: {"per_image": [], "errors": []} for n in names}
    done: dict[tuple, tuple] = {}
    total = sum(_job_points(j) for j in jobs)
    bar = tqdm(total=total, desc="kodak_rd", unit="pt", disable=not progress, file=sys.stderr, smoothing=0.05) \
        if tqdm else None

    reported: set[str] = set()

    def collect(job, rows, errors):
        done[(job[0], job[1], job[2])] = (rows, errors)
        if errors and _job_codec(job) not in reported:  # the first error of each codec, at once
            reported.add(_job_codec(job))
            print(f"[kodak_rd] ERROR {errors[0]}", file=sys.stderr)
        if bar:
            bar.set_postfix_str(f"{images[job[1]][0]} {_job_codec(job)}", refresh=False)
            bar.update(_job_points(job))

    if workers <= 1:
        _init_worker(images, {c.name for c in codecs}, bool(sc_modes), model, 0)
        _W["codecs"] = {c.name: c for c in codecs}
        for job in jobs:
            collect(*_run_job(job))
    else:
        import multiprocessing as mp
        import signal
        ctx = mp.get_context("spawn")  # no fork after torch is imported
        # SIGTERM's default kills this process at once and leaves the workers computing; as an
        # exit, it lets the pool's `with` terminate them.
        before = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        try:
            with ctx.Pool(workers, initializer=_init_worker,
                          initargs=(images, {c.name for c in codecs}, bool(sc_modes), model, threads)) as pool:
                for out in pool.imap_unordered(_run_job, jobs, chunksize=1):
                    collect(*out)
        finally:
            signal.signal(signal.SIGTERM, before)
    if bar:
        bar.close()
    for job in jobs:  # deterministic order whatever the workers did
        rows, errors = done[(job[0], job[1], job[2])]
        res[_job_codec(job)]["per_image"] += rows
        res[_job_codec(job)]["errors"] += errors
    return res


# ----------------------------------------------------------------------------
# Aggregation
# ----------------------------------------------------------------------------

def _msssim_db(v):
    v = np.asarray(v, dtype=float)
    return -10.0 * np.log10(np.clip(1.0 - v, 1e-10, None))


def _rate(px: float, s: float):
    return px / 1e6 / s if s and s > 0 else None


def aggregate(label: str, param: str, settings: str, sweep: list, rec: dict, n_images: int) -> dict:
    points = []
    for q in sweep:
        rows = [r for r in rec["per_image"] if r["param"] == q]
        if not rows:
            continue
        px = sum(r["h"] * r["w"] for r in rows)
        te = sum(r["enc_s"] for r in rows)
        drows = [r for r in rows if r.get("dec_s") is not None]
        td = sum(r["dec_s"] for r in drows)
        dpx = sum(r["h"] * r["w"] for r in drows)
        points.append({
            "param": q, "n_images": len(rows),
            "bpp": float(np.mean([r["bpp"] for r in rows])),
            "psnr": float(np.mean([r["psnr"] for r in rows])),
            "ms_ssim": float(np.mean([r["ms_ssim"] for r in rows])),
            "enc_s": te / len(rows), "dec_s": td / len(drows) if drows else None,
            "enc_mpix_s": _rate(px, te), "dec_mpix_s": _rate(dpx, td),
        })
    points.sort(key=lambda p: p["bpp"])
    allr = rec["per_image"]
    drows = [r for r in allr if r.get("dec_s") is not None]
    px, dpx = sum(r["h"] * r["w"] for r in allr), sum(r["h"] * r["w"] for r in drows)
    te, td = sum(r["enc_s"] for r in allr), sum(r["dec_s"] for r in drows)
    timing = {
        "n_codings": len(allr), "n_decodes": len(drows),
        "enc_s_per_image": te / len(allr) if allr else None,
        "dec_s_per_image": td / len(drows) if drows else None,
        "enc_mpix_s": _rate(px, te), "dec_mpix_s": _rate(dpx, td),
        "note": "mean over all images and sweep points; wall clock inside one worker process",
    }
    timing["job_cpu_s"] = sum(r.get("job_cpu_s", 0.0) for r in allr)
    complete = all(p["n_images"] == n_images for p in points) and len(points) == len(sweep)
    return {
        "label": label, "param_name": param, "settings": settings,
        "sweep": list(sweep), "points": points, "timing": timing,
        "complete": complete, "errors": rec["errors"][:20], "n_errors": len(rec["errors"]),
        "per_image": allr,
    }


def aggregate_selfcodec(mode: str, rec: dict, levels: list, dec_level, n_images: int, model_desc: str) -> dict:
    api_mode, search = split_mode(mode)
    call = f"mode={api_mode!r}, level=q, model={model_desc}" + (f", search={search}" if search else "")
    c = aggregate(f"selfcodec {mode}", "level", f"selfcodec.api.encode_report({call}); RD point from the "
                  "encoder's predicted recon", levels, rec, n_images)
    rows = rec["per_image"]
    d = [r for r in rows if r["decoded"]]
    e_all = [r["enc_s"] for r in rows]
    px = sum(r["h"] * r["w"] for r in d)
    te, td = sum(r["enc_s"] for r in d), sum(r["dec_s"] for r in d)
    c["timing"] = {
        "level": dec_level, "n_codings": len(rows), "n_decodes": len(d),
        "enc_s_per_image": te / len(d) if d else None, "dec_s_per_image": td / len(d) if d else None,
        "enc_mpix_s": _rate(px, te), "dec_mpix_s": _rate(px, td),
        "enc_s_per_image_all_levels": float(np.mean(e_all)) if e_all else None,
        "note": f"encode and decode at the default level {dec_level} (the only level decoded), per image; "
                "enc_s_per_image_all_levels: encode mean over every level",
        "job_cpu_s": sum(r.get("job_cpu_s", 0.0) for r in rows),
    }
    c["decode_check"] = {"level": dec_level, "n_decoded": len(d),
                         "n_equal_to_recon": sum(bool(r.get("decode_matches_recon")) for r in d),
                         "mismatches": [r["image"] for r in d if not r.get("decode_matches_recon")]}
    c["streams_vs_estimate"] = stream_accounting(rows) if rows else {}
    for p in c["points"]:
        p["mode"] = mode
    return c


def best_of_modes(codecs: dict) -> dict | None:
    """The best-of-modes curve: the (mode, level) averages on the upper convex hull of all of them,
    the operating points an encoder picking among the modes would use. The Pareto front is kept
    beside it: points under the hull but on the front (rec1 between two rec2 levels) would make a
    fitted curve zigzag below the best single mode's."""
    pts = [dict(p, level=p["param"]) for n, c in codecs.items() if n.startswith("selfcodec-") for p in c["points"]]
    if not pts:
        return None
    front = pareto_front(pts)
    for p in front:
        p["param"] = f"{p['mode']}/{p['level']}"
    hull = upper_hull(front)
    return {
        "label": "selfcodec best of modes", "param_name": "mode/level",
        "settings": "upper convex hull (in bpp, PSNR) of the per-(mode, level) averages of every lossy mode",
        "sweep": [p["param"] for p in hull], "points": hull, "pareto_front": front,
        "timing": {"enc_s_per_image": None, "dec_s_per_image": None, "enc_mpix_s": None, "dec_mpix_s": None,
                   "note": "derived curve; see the modes"},
        "complete": all(c["complete"] for n, c in codecs.items() if n.startswith("selfcodec-")),
        "errors": [], "n_errors": 0, "per_image": [],
    }


def speed_block(codecs: dict) -> dict:
    """Seconds and megapixels per second per image for WebP and every selfcodec mode, and the ratios."""
    out = {}
    webp = codecs.get("webp")
    wt = webp["timing"] if webp else None
    for name, c in codecs.items():
        if name != "webp" and not (name.startswith("selfcodec-") and name != BEST):
            continue
        t = c["timing"]
        row = {k: t.get(k) for k in ("enc_s_per_image", "dec_s_per_image", "enc_mpix_s", "dec_mpix_s")}
        row["basis"] = (f"level {t['level']}" if "level" in t else "mean over the sweep")
        if wt and name != "webp":
            row["enc_ratio_vs_webp"] = (t["enc_s_per_image"] / wt["enc_s_per_image"]
                                        if t["enc_s_per_image"] and wt["enc_s_per_image"] else None)
            row["dec_ratio_vs_webp"] = (t["dec_s_per_image"] / wt["dec_s_per_image"]
                                        if t["dec_s_per_image"] and wt["dec_s_per_image"] else None)
        out[name] = row
    return out


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
        if "pareto_front" in c:  # best of modes: its front beside its hull
            fr = c["pareto_front"]
            c["bd_rate_pareto_front_vs_jpeg420_pct"] = M.bd_rate(rb, rp, [p["bpp"] for p in fr], [p["psnr"] for p in fr])


def bd_against(codecs: dict, ref: str = "webp") -> dict:
    """{codec: (BD-rate over PSNR, BD-rate over MS-SSIM dB), in %} of every selfcodec curve
    against `ref`'s from the same run (None where either is missing)."""
    r = codecs.get(ref)
    out = {}
    for name, c in codecs.items():
        if not name.startswith("selfcodec") or not r or not r["points"] or not c["points"]:
            continue
        rb, cb = [p["bpp"] for p in r["points"]], [p["bpp"] for p in c["points"]]
        out[name] = (M.bd_rate(rb, [p["psnr"] for p in r["points"]], cb, [p["psnr"] for p in c["points"]]),
                     M.bd_rate(rb, _msssim_db([p["ms_ssim"] for p in r["points"]]), cb,
                               _msssim_db([p["ms_ssim"] for p in c["points"]])))
    return out


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

def plot(result: dict, path: Path, xmax: float | None = None) -> None:
    """PSNR vs bpp up to 2.2 bpp, or further (at most 8) when selfcodec points lie beyond."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if xmax is None:
        sc = [p["bpp"] for n, c in result["codecs"].items() if n.startswith("selfcodec") for p in c["points"]]
        xmax = max(2.2, min(max(sc, default=0.0) * 1.03, 8.0))
    fig, ax = plt.subplots(figsize=(12, 7.5))
    ys = []
    cmap = plt.get_cmap("tab10")
    for i, (name, c) in enumerate(result["codecs"].items()):
        pts = [p for p in c["points"] if p["bpp"] <= xmax * 1.05]
        if not pts:
            continue
        x, y = [p["bpp"] for p in pts], [p["psnr"] for p in pts]
        ys += y
        if name == BEST:
            ax.plot(x, y, "-", lw=5, color="k", alpha=0.25, label=f"{c['label']} (this run)", zorder=1)
            continue
        lw = 2.4 if name.startswith("selfcodec") else 1.6
        mk = "s" if name.startswith("selfcodec") else "o"
        ax.plot(x, y, "-", marker=mk, ms=4, lw=lw, color=cmap(i % 10), label=f"{c['label']} (this run)")
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
        ax.set_ylim(max(5.0, min(ys) - 1), min(max(ys) + 1, 60))
    ax.set_xlabel("bits per pixel (whole file; published curves: coded strings only)")
    ax.set_ylabel("PSNR-RGB [dB]")
    meta = result["meta"]
    ax.set_title(f"{meta.get('set_name', 'Kodak')} ({meta['n_images']} images{', quick' if meta['quick'] else ''}) — "
                 f"{meta['date'][:10]}, {meta['cpu_model']}", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def headline_rows(result: dict) -> list[str]:
    """The headline table (Markdown): codec, BD-rate vs JPEG 4:2:0, PSNR at 0.25/0.5/1.0 bpp, s/image."""
    L = ["| codec | BD-rate vs JPEG 4:2:0 | BD-PSNR | BD-rate (MS-SSIM dB) | PSNR @0.25 | PSNR @0.5 | PSNR @1.0 "
         "| enc s/img | dec s/img |",
         "|---|---|---|---|---|---|---|---|---|"]
    for name, c in result["codecs"].items():
        t = c["timing"]
        pa = c["psnr_at_bpp"]
        L.append(f"| {c['label']} | {fmt(c['bd_rate_vs_jpeg420_pct'], 1, ' %')} | "
                 f"{fmt(c['bd_psnr_vs_jpeg420_db'], 2, ' dB')} | {fmt(c['bd_rate_msssim_vs_jpeg420_pct'], 1, ' %')} | "
                 f"{fmt(pa['0.25'])} | {fmt(pa['0.5'])} | {fmt(pa['1.0'])} | "
                 f"{fmt(t['enc_s_per_image'], 3)} | {fmt(t['dec_s_per_image'], 3)} |")
    return L


def speed_rows(result: dict) -> list[str]:
    L = ["| codec | basis | enc s/img | dec s/img | enc MP/s | dec MP/s | enc / WebP | dec / WebP |",
         "|---|---|---|---|---|---|---|---|"]
    for name, s in (result.get("speed") or {}).items():
        L.append(f"| {result['codecs'][name]['label']} | {s['basis']} | {fmt(s['enc_s_per_image'], 3)} | "
                 f"{fmt(s['dec_s_per_image'], 3)} | {fmt(s['enc_mpix_s'], 3)} | {fmt(s['dec_mpix_s'], 3)} | "
                 f"{fmt(s.get('enc_ratio_vs_webp'), 1, 'x') if name != 'webp' else '1x'} | "
                 f"{fmt(s.get('dec_ratio_vs_webp'), 1, 'x') if name != 'webp' else '1x'} |")
    return L


def stream_rows(result: dict) -> list[str]:
    L = ["| mode | level | stream | real bytes | estimated bytes | real vs estimate | within 1 % |",
         "|---|---|---|---|---|---|---|"]
    for name, c in result["codecs"].items():
        for lv, s in (c.get("streams_vs_estimate") or {}).items():
            for k, v in s["streams"].items():
                ok = v["within_1pct"]
                L.append(f"| {name.removeprefix('selfcodec-')} | {lv} | {k} | {v['real_bytes']} | "
                         f"{v['estimated_bytes']:.0f} | {fmt(v['real_over_estimate_pct'], 2, ' %')} | "
                         f"{'—' if ok is None else 'yes' if ok else 'NO'} |")
    return L


def markdown(result: dict) -> str:
    meta = result["meta"]
    L = [f"# {meta.get('set_name', 'Kodak')} rate-distortion{' (quick)' if meta['quick'] else ''}", "",
         f"- date: {meta['date']}",
         f"- machine: {meta['platform']['machine']}, {meta['cpu_model']} "
         f"({meta['cpus_available']} CPUs available, load at start {meta.get('loadavg_at_start')})",
         f"- command: `{meta['command']}`",
         f"- wall time: {meta['wall_s']:.0f} s with {meta['workers']} worker process(es)",
         f"- images: {meta['n_images']} from `{meta['data_dir']}`"
         + (f", centre-cropped to {meta['crop']}x{meta['crop']}" if meta.get("crop") else ""),
         "- bpp = 8 x whole-file bytes / pixels; PSNR over RGB per image, then averaged with bpp.",
         "- BD-rate (PSNR, cubic, overlapping range) vs JPEG 4:2:0 from this run; negative = fewer bits.",
         "- PSNR at a bpp: linear in log-bpp between measured points, — outside the measured range.", ""]
    L += headline_rows(result)
    if result.get("speed"):
        L += ["", "## Speed (per image, same run)", ""] + speed_rows(result)
    if any(c.get("streams_vs_estimate") for c in result["codecs"].values()):
        L += ["", "## selfcodec streams: real size vs the model's estimate (sum over the images)", ""]
        L += stream_rows(result)
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

def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except Exception:
        return max(1, os.cpu_count() or 1)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.kodak_rd", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="2 images cropped to 128x128, 3 sweep points per codec (selfcodec: 3 levels), 1 worker")
    p.add_argument("--data", default=str(DEFAULT_KODAK), help="folder of PNG or JPEG images (default: ../shared/data/kodak)")
    p.add_argument("--set-name", default="Kodak", help="what the figure and table call the images (e.g. 'BSDS500 test')")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="output folder (default: benchmarks/results)")
    p.add_argument("--anchors", default=str(A.DEFAULT_ANCHORS), help="anchors.md with published curves")
    p.add_argument("--no-anchors", action="store_true", help="do not read anchors.md")
    p.add_argument("--no-selfcodec", action="store_true", help="do not run selfcodec")
    p.add_argument("--model", default=None, help="selfcodec model (shipped name or .safetensors path; "
                   "default: the shipped default model)")
    p.add_argument("--codecs", default="", help="comma-separated subset of codec names (selfcodec-<mode> too)")
    p.add_argument("--images", type=int, default=0, help="use only the first N images")
    p.add_argument("--crop", type=int, default=0, help="centre-crop images to NxN (quick: 128)")
    p.add_argument("--workers", type=int, default=0,
                   help="worker processes (default: one per available CPU; --quick: 1)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads per worker (default 1)")
    p.add_argument("--search", type=int, default=0, metavar="STEPS",
                   help="also run rec2 with the encoder-side latent search of STEPS steps (rec2-searchSTEPS)")
    p.add_argument("--search-levels", default="", help="levels of the search run (default: every level)")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    full_argv, out, notes, note = start_run("kodak_rd", args.out, argv)

    files = list_images(args.data)
    n_img = args.images or (QUICK_IMAGES if args.quick else 0)
    if n_img:
        files = files[:n_img]
    crop = args.crop or (QUICK_CROP if args.quick else 0)
    images = load_images(files, crop)

    want = None
    if args.codecs:
        want = {s.strip() for s in args.codecs.split(",") if s.strip()} | {REFERENCE}
    codecs = [c for c in B.lossy_codecs() if want is None or c.name in want]
    codecs, skipped = usable_codecs(codecs, note)

    api, msg = load_selfcodec_api(args.no_selfcodec)
    sc_modes, levels, sc_levels, dec_level = [], [], {}, None
    search_mode = f"{SEARCH_PREFIX}{args.search}" if args.search else None
    if api is not None and not hasattr(api, "encode_report"):
        api, msg = None, "selfcodec skipped: selfcodec.api has no encode_report"
    note(msg)
    if api is not None:
        sc_modes, levels, dec_level = selfcodec_plan(api, args.quick)
        if want is not None:
            sc_modes = [m for m in sc_modes if f"selfcodec-{m}" in want]
        sc_levels = {m: levels for m in sc_modes}
        if search_mode:
            sc_modes.insert(0, search_mode)  # the longest jobs first
            sc_levels[search_mode] = [int(v) for v in args.search_levels.split(",")] if args.search_levels else levels
        try:  # fail here, once, with a clear message, rather than in every job
            from selfcodec import zoo
            zoo.load(args.model)
        except Exception as e:
            note(f"selfcodec skipped: cannot load model {args.model or 'default'}: {e}")
            sc_modes = []

    workers = args.workers or (1 if args.quick else _default_workers())
    threads = args.threads or 1  # one torch thread per worker: on a shared CPU more threads contend badly
    torch_threads0 = None
    if workers <= 1 and sc_modes:
        import torch
        torch_threads0 = torch.get_num_threads()
        torch.set_num_threads(threads)

    t0 = time.perf_counter()
    try:
        recs = run_jobs(images, codecs, sc_modes, sc_levels, dec_level, args.model, args.quick, workers, threads,
                        progress=not args.no_progress)
    finally:
        if torch_threads0:
            torch.set_num_threads(torch_threads0)
    wall = time.perf_counter() - t0

    agg = {c.name: aggregate(c.label, c.param, c.settings, c.quick_sweep if args.quick else c.sweep,
                             recs[c.name], len(images)) for c in codecs}
    model_desc = repr(args.model) if args.model else "default"
    for m in sc_modes:
        agg[f"selfcodec-{m}"] = aggregate_selfcodec(m, recs[f"selfcodec-{m}"], sc_levels[m], dec_level, len(images),
                                                    model_desc)
    best = best_of_modes(agg)
    if best:
        agg[BEST] = best
    for name, c in agg.items():
        if c["n_errors"]:
            note(f"codec {name}: {c['n_errors']} coding errors, first: {c['errors'][0]}")
    add_bd(agg)

    if sc_modes:
        chk = [agg[f"selfcodec-{m}"]["decode_check"] for m in sc_modes]
        n_dec, n_eq = sum(c["n_decoded"] for c in chk), sum(c["n_equal_to_recon"] for c in chk)
        note(f"selfcodec: every (mode, level, image) coded with selfcodec.api.encode_report; the RD points use the "
             f"encoder-predicted reconstruction (bit-identical to the decoder's output, CRC-checked by the decoder). "
             f"The real decoder ran at the default level {dec_level} for every mode and image: {n_eq}/{n_dec} "
             f"decodes equal to the prediction; decode seconds come from these.")
        if n_eq != n_dec:
            note(f"selfcodec: {n_dec - n_eq} decodes DIFFER from the encoder's prediction")
        bad = [(m, lv, k, round(v["real_over_estimate_pct"], 2)) for m in sc_modes
               for lv, s in agg[f"selfcodec-{m}"]["streams_vs_estimate"].items() for k, v in s["streams"].items()
               if v["within_1pct"] is False]
        note("selfcodec streams: real size within 1 % of the model's estimate for every mode, level and stream"
             if not bad else f"selfcodec streams off the estimate by more than 1 %: {bad}")
    note(f"{workers} worker process(es), torch threads per worker: {threads}; "
         f"seconds are wall clock per coding inside a worker, WebP and selfcodec alike")

    anchors_text = None
    if args.no_anchors:
        note("anchors not read (--no-anchors)")
    else:
        anchors_text, amsg = A.load(args.anchors)
        note(amsg)

    meta = stamp(full_argv, B.versions())
    meta.update({
        "quick": bool(args.quick), "data_dir": str(Path(args.data).resolve()),
        "n_images": len(images), "crop": crop or None, "set_name": args.set_name,
        "images": [{"name": n, "h": int(i.shape[0]), "w": int(i.shape[1])} for n, i in images],
        "anchors_path": None if anchors_text is None else str(Path(args.anchors).resolve()),
        "wall_s": wall, "cpu_s_jobs": sum(c["timing"].get("job_cpu_s") or 0.0 for c in agg.values()),
        "workers": workers, "threads_per_worker": threads,
        "reference_codec": REFERENCE, "target_bpps": list(TARGET_BPPS),
        "selfcodec": {"model": args.model or "default", "modes": sc_modes, "levels": levels,
                      "search": {"mode": search_mode, "steps": args.search,
                                 "levels": sc_levels.get(search_mode)} if search_mode else None,
                      "decode_level": dec_level} if sc_modes else None,
        "metrics": "psnr: RGB MSE over all subpixels, capped at 100 dB; ms_ssim: 5-scale RGB per-channel mean "
                   "(fewer scales on small images); bpp: whole-file bytes",
    })
    if sc_modes:
        try:
            from selfcodec import zoo
            p = zoo.model_path(args.model)
            meta["selfcodec"].update({"model_path": str(p.resolve()), "model_hash": zoo.load(args.model)[1].hex()})
        except Exception:
            pass
    result = {"meta": meta, "codecs": agg, "skipped": skipped,
              "anchors": anchors_block(anchors_text, agg), "notes": notes}
    result["speed"] = speed_block(agg)
    result["selfcodec_vs_webp"] = {n: {"enc_ratio": s.get("enc_ratio_vs_webp"), "dec_ratio": s.get("dec_ratio_vs_webp")}
                                   for n, s in result["speed"].items() if n != "webp"}

    (out / "kodak.json").write_text(json.dumps(to_jsonable(result), indent=1))
    (out / "kodak.md").write_text(markdown(result))
    plot(result, out / "kodak_rd.png")

    print(f"[kodak_rd] {len(images)} images, {len(agg)} curves, {wall:.1f} s; wrote {out}/kodak.json, "
          f"kodak.md, kodak_rd.png", file=sys.stderr)
    for name, c in agg.items():
        bd = c["bd_rate_vs_jpeg420_pct"]
        t = c["timing"]
        print(f"  {name:22s} BD-rate vs jpeg420 {fmt(bd, 1, ' %'):>9s}   "
              f"enc {fmt(t['enc_s_per_image'], 3)} s  dec {fmt(t['dec_s_per_image'], 3)} s per image")
    return result


if __name__ == "__main__":
    main()
