"""Lossless benchmark: Kodak bits per subpixel and CIFAR-10 test bits per dimension.

    python -m benchmarks.lossless [--quick] [--all] [--n N] [--data DIR] [--cifar PNG]
                                  [--photos DIR [--photos-n N]]
                                  [--out benchmarks/results] [--no-selfcodec] [--no-anchors]

Codecs: PNG (zlib level 9), WebP lossless, JPEG XL lossless (effort 7),
JPEG 2000 lossless (reversible 5/3 + RCT), and selfcodec's ``lossless`` mode
through ``selfcodec.api`` when it exists.  Every image is coded as its own
file and whole-file bytes are counted (headers included); every decode is
checked to be exact.

CIFAR-10: the test atlas ``../shared/data/cifar10/test.png`` (3200x3200, a
100x100 grid of 32x32 images, row-major).  Default: first 1000 images;
``--all``: all 10,000.  ``--quick``: 2 Kodak images cropped to 128x128 and 50
CIFAR images.  ``--photos DIR``: a second set of full-size photos (the first
``--photos-n`` in name order; e.g. BSDS500 test, which no model trains on).

Each codec's row counts the images on which it is larger than PNG (``larger_than_png``);
selfcodec's, the files that hold their pixels stored (``n_stored``: PNG or WebP, where that
is smaller than the model's coding).

Writes ``lossless.json`` and ``lossless.md`` with the published lossless
figures from anchors.md alongside.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from selfcodec import metrics as M

from . import anchors as A
from . import baselines as B
from .common import (DEFAULT_CIFAR, DEFAULT_KODAK, DEFAULT_OUT, fmt, list_images, load_rgb,
                     load_selfcodec_api, load_images, stamp, start_run, to_jsonable,
                     usable_codecs)

try:
    from tqdm import tqdm
except Exception:  # pragma: no cover
    tqdm = None


def cifar_images(path: str | Path, n: int | None) -> np.ndarray:
    a = load_rgb(path)
    if a.shape[0] % 32 or a.shape[1] % 32:
        raise SystemExit(f"{path}: {a.shape} is not a grid of 32x32 tiles")
    gh, gw = a.shape[0] // 32, a.shape[1] // 32
    imgs = a.reshape(gh, 32, gw, 32, 3).transpose(0, 2, 1, 3, 4).reshape(gh * gw, 32, 32, 3)
    return np.ascontiguousarray(imgs[:n] if n else imgs)


def selfcodec_lossless(api, model=None) -> B.Codec | None:
    if "lossless" not in list(getattr(api, "MODES", [])) + list(getattr(api, "LOSSLESS_MODES", [])):
        return None
    levels = list(getattr(api, "LEVELS", [])) or [0]
    # the level `selfcodec encode -m lossless` uses (the latents' steps set how the bits split)
    level = getattr(api, "LOSSLESS_LEVEL", getattr(api, "DEFAULT_LEVEL", levels[0]))

    def fn(img):
        return B._timed(lambda: api.encode(img, mode="lossless", level=level, model=model),
                        lambda d: api.decode(d, as_array=True) if model is None
                        else api.decode(d, model=model, as_array=True))

    return B.Codec("selfcodec-lossless", "selfcodec lossless", fn, settings=f"selfcodec.api.encode(mode='lossless', "
                   f"level={level!r})", lossless=True)


def run_set(name: str, images, codecs: list[B.Codec], progress: bool) -> dict:
    res = {}
    total = len(images) * len(codecs)
    bar = tqdm(total=total, desc=f"lossless {name}", unit="img", disable=not progress, file=sys.stderr) \
        if tqdm else None
    for c in codecs:
        nbytes, subpx, te, td, errors, inexact = [], [], 0.0, 0.0, [], 0
        per_image = []
        for idx, item in enumerate(images):
            label, img = item if isinstance(item, tuple) else (str(idx), item)
            try:
                data, dec, e, d = c.run(img)
                if dec.shape != img.shape or not np.array_equal(dec, img):
                    inexact += 1
                nbytes.append(len(data))
                subpx.append(img.size)
                te += e
                td += d
                if isinstance(item, tuple):
                    per_image.append({"image": label, "bytes": len(data),
                                      "bits_per_subpixel": 8.0 * len(data) / img.size, "enc_s": e, "dec_s": d,
                                      **({"stored": _stored(data)} if c.name == "selfcodec-lossless" else {})})
            except Exception as ex:
                if not errors:
                    print(f"[lossless] ERROR {c.name} on {label}: {ex!r}", file=sys.stderr)
                errors.append(f"{label}: {ex!r}")
            if bar:
                bar.update(1)
            if idx == 0 and errors:  # fails on the first image: do not grind through the rest
                print(f"[lossless] {c.name} failed on the first {name} image: skipping the rest", file=sys.stderr)
                if bar:
                    bar.update(len(images) - 1)
                break
        n = len(nbytes)
        px = sum(subpx) / 3.0
        res[c.name] = {
            "label": c.label, "settings": c.settings, "n_images": n,
            "bits_per_subpixel_total": 8.0 * sum(nbytes) / sum(subpx) if n else None,
            "bits_per_subpixel_mean": float(np.mean([8.0 * b / s for b, s in zip(nbytes, subpx)])) if n else None,
            "total_bytes": int(sum(nbytes)),
            "enc_s_per_image": te / n if n else None, "dec_s_per_image": td / n if n else None,
            "enc_mpix_s": px / 1e6 / te if te > 0 else None, "dec_mpix_s": px / 1e6 / td if td > 0 else None,
            "not_exact": inexact, "n_errors": len(errors), "errors": errors[:10],
        }
        if per_image:
            res[c.name]["per_image"] = per_image
            if any("stored" in i for i in per_image):
                res[c.name]["n_stored"] = sum(i["stored"] for i in per_image)
    if bar:
        bar.close()
    return res


def _stored(data: bytes) -> bool:
    """Whether a selfcodec lossless file holds its pixels stored (PNG or WebP), not the model's coding."""
    from selfcodec import api

    return bool(api.info(data).get("stored"))


def count_larger_than_png(res: dict) -> None:
    """Each codec's count of images on which its file is larger than PNG's (per-image sets only)."""
    png = {r["image"]: r["bytes"] for r in res.get("png", {}).get("per_image", [])}
    for r in res.values():
        if png and "per_image" in r:
            r["larger_than_png"] = sum(i["bytes"] > png.get(i["image"], float("inf")) for i in r["per_image"])


def markdown(result: dict) -> str:
    meta = result["meta"]
    L = [f"# Lossless{' (quick)' if meta['quick'] else ''}", "",
         f"- date: {meta['date']}",
         f"- machine: {meta['platform']['machine']}, {meta['cpu_model']} ({meta['cpus_available']} CPUs available)",
         f"- command: `{meta['command']}`",
         f"- Kodak: {meta['kodak']['n_images']} images from `{meta['kodak']['data_dir']}`"
         + (f", centre-cropped to {meta['kodak']['crop']}" if meta['kodak'].get('crop') else ""),
         f"- CIFAR-10 test: first {meta['cifar10']['n_images']} images of `{meta['cifar10']['path']}`, "
         "each 32x32 image coded as its own file",
         "- bits per subpixel (= bits per dimension) = 8 x whole-file bytes / (H x W x 3), total over the set.",
         "",
         "| codec | Kodak bits/subpixel | Kodak larger than PNG on | CIFAR-10 bits/dim | Kodak enc s/img | "
         "Kodak dec s/img | exact |",
         "|---|---|---|---|---|---|---|"]
    names = list(dict.fromkeys(list(result["kodak"]) + list(result["cifar10"])))
    for n in names:
        k = result["kodak"].get(n, {})
        c = result["cifar10"].get(n, {})
        coded = (k.get("n_images") or 0) + (c.get("n_images") or 0)
        exact = "—" if not coded else ("yes" if not k.get("not_exact") and not c.get("not_exact") else "NO")
        if k.get("n_errors") or c.get("n_errors"):
            exact += f" ({(k.get('n_errors') or 0) + (c.get('n_errors') or 0)} errors)"
        label = (k.get("label") or c.get("label")) + (f" ({k['n_stored']} stored)" if k.get("n_stored") else "")
        L.append(f"| {label} | {fmt(k.get('bits_per_subpixel_total'), 3)} | "
                 f"{k.get('larger_than_png', '—')} | {fmt(c.get('bits_per_subpixel_total'), 3)} | {fmt(k.get('enc_s_per_image'), 3)} | "
                 f"{fmt(k.get('dec_s_per_image'), 3)} | {exact} |")
    if result.get("photos"):
        ph = meta["photos"]
        L += ["", f"## Photos: {ph['n_images']} full-size images from `{ph['data_dir']}`", "",
              "| codec | bits/subpixel | larger than PNG on | enc s/img | dec s/img | exact |", "|---|---|---|---|---|---|"]
        for r in result["photos"].values():
            label = r["label"] + (f" ({r['n_stored']} stored)" if r.get("n_stored") else "")
            L.append(f"| {label} | {fmt(r['bits_per_subpixel_total'], 3)} | {r.get('larger_than_png', '—')} | "
                     f"{fmt(r['enc_s_per_image'], 3)} | {fmt(r['dec_s_per_image'], 3)} | "
                     f"{'yes' if not r['not_exact'] and not r['n_errors'] else 'NO'} |")
    pub = result.get("published") or {}
    if pub.get("by_method"):
        L += ["", "## Published (anchors.md)", "", "Bit-Swap README table (bits per dimension):", "",
              "| method | " + " | ".join(next(iter(pub["by_method"].values())).keys()) + " |",
              "|---|" + "---|" * len(next(iter(pub["by_method"].values())))]
        for m, row in pub["by_method"].items():
            L.append(f"| {m} | " + " | ".join(fmt(v, 2) if isinstance(v, float) else str(v)
                                               for v in row.values()) + " |")
    if pub.get("ardm_table3_cifar10"):
        L += ["", "ARDM Table 3, CIFAR-10 bits per dimension (per image / whole dataset):", "",
              "| method | per image | dataset |", "|---|---|---|"]
        for m, v in pub["ardm_table3_cifar10"].items():
            L.append(f"| {m} | {v['per_image']} | {fmt(v['dataset'], 2)} |")
    if pub.get("notes"):
        L += ["", "Other published notes:", ""] + [f"- {n}" for n in pub["notes"] if not n.endswith(":")]
    if result.get("notes"):
        L += ["", "## Notes", ""] + [f"- {n}" for n in result["notes"]]
    return "\n".join(L) + "\n"


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.lossless", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2 Kodak crops (128x128) and 50 CIFAR images")
    p.add_argument("--all", action="store_true", help="all 10,000 CIFAR-10 test images")
    p.add_argument("--n", type=int, default=1000, help="number of CIFAR images (default 1000)")
    p.add_argument("--data", default=str(DEFAULT_KODAK))
    p.add_argument("--cifar", default=str(DEFAULT_CIFAR))
    p.add_argument("--no-cifar", action="store_true")
    p.add_argument("--photos", default=None, help="a folder of full-size photos not in training (a second set)")
    p.add_argument("--photos-n", type=int, default=24, help="how many of --photos, in name order (default 24)")
    p.add_argument("--out", default=str(DEFAULT_OUT))
    p.add_argument("--anchors", default=str(A.DEFAULT_ANCHORS))
    p.add_argument("--no-anchors", action="store_true")
    p.add_argument("--no-selfcodec", action="store_true")
    p.add_argument("--model", default=None, help="model passed to selfcodec.api (name or path)")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def _lossless_default() -> str:
    from selfcodec import zoo  # here, not at import: a run without selfcodec must not need torch

    return f"{zoo.default_for('lossless')} (the lossless default)"


def main(argv=None) -> dict:
    args = parse_args(argv)
    full_argv, out, notes, note = start_run("lossless", args.out, argv)

    files = list_images(args.data)
    crop = 128 if args.quick else 0
    if args.quick:
        files = files[:2]
    kodak = load_images(files, crop)

    n_cifar = 50 if args.quick else (None if args.all else args.n)
    cifar = None
    if args.no_cifar:
        note("CIFAR-10 skipped (--no-cifar)")
    elif not Path(args.cifar).is_file():
        note(f"CIFAR-10 skipped: {args.cifar} not found")
    else:
        cifar = cifar_images(args.cifar, n_cifar)

    codecs = B.lossless_codecs()
    api, msg = load_selfcodec_api(args.no_selfcodec)
    note(msg)
    if api is not None:
        sc = selfcodec_lossless(api, args.model)
        if sc is None:
            note("selfcodec.api has no 'lossless' mode: skipped")
        else:
            codecs.append(sc)
    codecs, skipped = usable_codecs(codecs, note)

    t0 = time.perf_counter()
    res_k = run_set("kodak", kodak, codecs, not args.no_progress)
    res_c = run_set("cifar10", list(cifar), codecs, not args.no_progress) if cifar is not None else {}
    photos = load_images(list_images(args.photos)[:args.photos_n], 0) if args.photos else []
    res_p = run_set("photos", photos, codecs, not args.no_progress) if photos else {}
    wall = time.perf_counter() - t0
    for res in (res_k, res_p):
        count_larger_than_png(res)
    for name, r in list(res_k.items()) + list(res_c.items()) + list(res_p.items()):
        if r["n_errors"]:
            note(f"codec {name}: {r['n_errors']} coding errors, first: {r['errors'][0]}")
        if r["not_exact"]:
            note(f"codec {name}: {r['not_exact']} decodes were NOT exact")

    pub = {}
    if args.no_anchors:
        note("anchors not read (--no-anchors)")
    else:
        text, amsg = A.load(args.anchors)
        note(amsg)
        if text:
            pub = A.lossless_tables(text)
            pub.pop("tables", None)

    meta = stamp(full_argv, B.versions())
    meta.update({
        "quick": bool(args.quick), "wall_s": wall, "model": args.model or (None if args.no_selfcodec else _lossless_default()),
        "kodak": {"data_dir": str(Path(args.data).resolve()), "n_images": len(kodak), "crop": crop or None},
        "photos": {"data_dir": str(Path(args.photos).resolve()) if args.photos else None, "n_images": len(photos)},
        "cifar10": {"path": str(Path(args.cifar).resolve()), "n_images": 0 if cifar is None else len(cifar),
                    "layout": "100x100 grid of 32x32, row-major; image i at tile (i // 100, i % 100)"},
        "unit": "bits per subpixel = 8 * whole-file bytes / (H*W*3); *_total = sum over set, *_mean = mean of "
                "per-image values",
    })
    result = {"meta": meta, "kodak": res_k, "photos": res_p, "cifar10": res_c, "published": pub, "skipped": skipped,
              "notes": notes}
    (out / "lossless.json").write_text(json.dumps(to_jsonable(result), indent=1, ensure_ascii=False))
    (out / "lossless.md").write_text(markdown(result))
    print(f"[lossless] {wall:.1f} s; wrote {out}/lossless.json, lossless.md", file=sys.stderr)
    for n in res_k:
        print(f"  {n:20s} Kodak {fmt(res_k[n]['bits_per_subpixel_total'], 3)} bpsp   CIFAR-10 "
              f"{fmt(res_c.get(n, {}).get('bits_per_subpixel_total'), 3)} bpd")
    return result


if __name__ == "__main__":
    main()
