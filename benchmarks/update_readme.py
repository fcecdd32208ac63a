"""Write the benchmark results into README.md, between the markers

    <!-- results:start -->
    <!-- results:end -->

(in the section "## Results"; if the markers are missing, that section is appended at the end).

    python -m benchmarks.update_readme [--readme README.md] [--results benchmarks/results] [--models models]

Everything in between is generated from the JSON files in --results: ``kodak.json``
(headline table: BD-rate vs JPEG 4:2:0, PSNR at 0.25/0.5/1.0 bpp, seconds per image;
speed vs WebP; streams vs the model's estimate), ``lossless.json``, ``memory.json``,
``modes_figure.json`` and ``kodak-search/kodak.json`` (a Kodak run with ``--search``), with links to ``kodak_rd.png``, ``modes_figure.png`` and every
``models/*_curve.png``.  Each block is stamped with the date, the machine (CPU model,
cores) and the exact command from its JSON ``meta``.  A missing file is said, not hidden.
Only the text between the markers changes; the README is re-read right before writing.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
from pathlib import Path

from .common import DEFAULT_OUT, REPO_ROOT, fmt

START = "<!-- results:start -->"
END = "<!-- results:end -->"
SECTION = "## Results"
SEARCH_DIR = "kodak-search"  # python -m benchmarks.kodak_rd --search N --out benchmarks/results/kodak-search
REAL_DIR = "bsds500-test"  # python -m benchmarks.kodak_rd --data ../shared/data/bsds500/test --set-name "BSDS500 test" ...


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _link(target: Path, readme: Path) -> str:
    return Path(os.path.relpath(target.resolve(), readme.resolve().parent)).as_posix()


def stamp_line(meta: dict) -> str:
    plat = meta.get("platform") or {}
    cores = meta.get("cpus_available")
    wall = meta.get("wall_s")
    return (f"_{meta.get('date', '?')} · {meta.get('cpu_model', '?')}, {cores} cores ({plat.get('machine', '?')})"
            + (f" · load at start {meta['loadavg_at_start'][0]:.2f}" if meta.get("loadavg_at_start") else "")
            + (f" · wall {wall:.0f} s" if isinstance(wall, (int, float)) else "")
            + f" · `{meta.get('command', '?')}`_")


def _shipped_as(sc: dict) -> str:
    """', now shipped as NAME' when the run's weights are a shipped model other than its name says."""
    from selfcodec import zoo

    try:
        name = zoo.find_by_hash(bytes.fromhex(sc.get("model_hash", "")))
    except ValueError:
        return ""
    said = sc.get("model")
    return f", now shipped as `{name}`" if name and name != (zoo.DEFAULT_MODEL if said == "default" else said) else ""


def _best_definition(best: dict | None) -> str:
    """How the run's best-of-modes curve was made: the convex hull since 2026-12-07, the Pareto front before."""
    if not best or "pareto_front" not in best:
        return ". selfcodec best of modes = Pareto front over every (mode, level)."
    front = best.get("bd_rate_pareto_front_vs_jpeg420_pct")
    return (". selfcodec best of modes = upper convex hull (bpp, PSNR) over every (mode, level)"
            + (f"; over their Pareto front instead, BD-rate {front:+.1f} % against JPEG 4:2:0." if front is not None else "."))


def kodak_block(j: dict, readme: Path, results: Path, title: str = "### Kodak rate–quality") -> list[str]:
    from .kodak_rd import bd_against, headline_rows, speed_rows

    meta = j["meta"]
    L = [title, "", stamp_line(meta), ""]
    sc = meta.get("selfcodec") or {}
    L.append(f"{meta['n_images']} images{' (quick)' if meta.get('quick') else ''}"
             + (f", centre-cropped to {meta['crop']}" if meta.get("crop") else "")
             + "; bpp over the whole file, PSNR over RGB; BD-rate against JPEG 4:2:0 of the same run"
             + (f"; selfcodec model `{sc.get('model')}` ({sc.get('model_hash', '?')[:16]}{_shipped_as(sc)}), levels "
                f"{sc.get('levels')}, decoded at level {sc.get('decode_level')}" if sc else "; selfcodec not run")
             + _best_definition(j["codecs"].get("selfcodec-best"))
             + (f" rec2-search{sc['search']['steps']}: rec2 with `encode --search {sc['search']['steps']}`, levels "
                f"{sc['search']['levels']}." if sc.get("search") else ""))
    L += [""] + headline_rows(j)
    vs_webp = bd_against(j["codecs"])
    if vs_webp:
        L += ["", "BD-rate against WebP of the same run (PSNR; MS-SSIM dB): " + "; ".join(
            f"{name.removeprefix('selfcodec-')} {p:+.1f} % ({m:+.1f} %)" for name, (p, m) in vs_webp.items()
            if p == p) + "."]
    if j.get("speed"):
        L += ["", "Speed per image (same run; selfcodec at its default level, WebP over its sweep):", ""]
        L += speed_rows(j)
    worst = []
    for name, c in j["codecs"].items():
        for lv, s in (c.get("streams_vs_estimate") or {}).items():
            for k, v in s["streams"].items():
                if v.get("real_over_estimate_pct") is not None:
                    worst.append((abs(v["real_over_estimate_pct"]), name, lv, k, v["real_over_estimate_pct"]))
    if worst:
        off = [w for w in worst if w[0] > 1.0]
        m = max(worst)
        L += ["", f"Streams, real bytes vs the model's estimate (summed over the images, {len(worst)} "
                  f"(mode, level, stream) cells): largest deviation {m[4]:+.2f} % ({m[1]} level {m[2]}, stream "
                  f"{m[3]}); {len(worst) - len(off)} of {len(worst)} within 1 %."]
    dc = [c["decode_check"] for c in j["codecs"].values() if c.get("decode_check")]
    if dc:
        L += ["", f"Decoder check: {sum(d['n_equal_to_recon'] for d in dc)} of {sum(d['n_decoded'] for d in dc)} "
                  "decodes equal to the encoder's predicted reconstruction."]
    png = results / "kodak_rd.png"
    L += ["", f"![Kodak PSNR vs bpp]({_link(png, readme)})" if png.is_file() else "_kodak_rd.png missing_"]
    return L


def lossless_block(j: dict) -> list[str]:
    meta = j["meta"]
    L = ["### Lossless", "", stamp_line(meta), "",
         "Bits per subpixel over the whole file, total over the set; every decode checked exact; "
         "\"stored\": selfcodec files that hold their pixels (raw, PNG or WebP) where PNG beat the model or came within 5 % of it.", "",
         "| codec | Kodak bits/subpixel | Kodak larger than PNG on | CIFAR-10 bits/dim | Kodak enc s/img | Kodak dec s/img | exact |",
         "|---|---|---|---|---|---|---|"]
    kod, cif = j.get("kodak") or {}, j.get("cifar10") or {}
    for n in dict.fromkeys(list(kod) + list(cif)):
        k, c = kod.get(n, {}), cif.get(n, {})
        coded = (k.get("n_images") or 0) + (c.get("n_images") or 0)
        exact = "—" if not coded else "yes" if not k.get("not_exact") and not c.get("not_exact") else "NO"
        if k.get("n_errors") or c.get("n_errors"):
            exact += f" ({(k.get('n_errors') or 0) + (c.get('n_errors') or 0)} errors)"
        stored = [f"{r['n_stored']} {w}" for r, w in ((k, "Kodak"), (c, "CIFAR-10")) if r.get("n_stored")]
        label = (k.get("label") or c.get("label")) + (f" ({', '.join(stored)} stored)" if stored else "")
        L.append(f"| {label} | {fmt(k.get('bits_per_subpixel_total'), 3)} | {k.get('larger_than_png', '—')} | "
                 f"{fmt(c.get('bits_per_subpixel_total'), 3)} | {fmt(k.get('enc_s_per_image'), 3)} | "
                 f"{fmt(k.get('dec_s_per_image'), 3)} | {exact} |")
    km, cm = meta.get("kodak") or {}, meta.get("cifar10") or {}
    L += ["", f"Kodak: {km.get('n_images')} images" + (f" cropped to {km['crop']}" if km.get("crop") else "")
          + f"; CIFAR-10: {cm.get('n_images')} test images, each its own file; selfcodec model "
          + f"`{meta.get('model', 'not recorded')}`."]
    photos, pm = j.get("photos") or {}, meta.get("photos") or {}
    if photos:
        where = pm["data_dir"].split("/data/")[-1]  # (the shared data folder's own name for the set)
        L += ["", f"Full-size photos no model trains on: {pm.get('n_images')} images of `{where}`:", "",
              "| codec | bits/subpixel | larger than PNG on | enc s/img | dec s/img |", "|---|---|---|---|---|"]
        for r in photos.values():
            label = r["label"] + (f" ({r['n_stored']} stored)" if r.get("n_stored") else "")
            L.append(f"| {label} | {fmt(r['bits_per_subpixel_total'], 3)} | {r.get('larger_than_png', '—')} | "
                     f"{fmt(r['enc_s_per_image'], 3)} | {fmt(r['dec_s_per_image'], 3)} |")
    return L


def memory_block(j: dict) -> list[str]:
    meta = j["meta"]
    f = j["full"]
    L = ["### Peak memory", "", stamp_line(meta), "",
         f"{f['width']}x{f['height']} image ({meta.get('image')}), level {meta.get('level')}, "
         f"{meta.get('torch_threads')} torch thread(s); one child process per run, peak RSS = its VmHWM.", "",
         f"| mode | op | peak RSS MiB | after model load MiB | one {meta.get('tile')}² tile: peak MiB | s | MP/s | bound |",
         "|---|---|---|---|---|---|---|---|"]
    for mode, ops in f["modes"].items():
        for op in ("encode", "decode"):
            r = ops.get(op, {})
            b = (j.get("bound") or {}).get(mode, {}).get(op, {})
            if "error" in r:
                L.append(f"| {mode} | {op} | error: {r['error']} | | | | | |")
                continue
            L.append(f"| {mode} | {op} | {fmt(r.get('peak_rss_mib'), 0)} | "
                     f"{fmt((r.get('after_model_load') or {}).get('peak_mib'), 0)} | "
                     f"{fmt(b.get('peak_one_tile_mib'), 0)} | {fmt(r.get('wall_s'), 1)} | {fmt(r.get('mpix_s'), 3)} | "
                     f"{b.get('bound', '—')} |")
    L += [""] + [f"{n[:1].upper()}{n[1:]}." for n in j.get("notes", [])]
    return L


def figure_block(j: dict | None, readme: Path, results: Path) -> list[str]:
    png = results / "modes_figure.png"
    L = ["### Modes side by side", ""]
    if j:
        m = j["meta"]
        L += [stamp_line(m), "",
              f"`{Path(m.get('image', '?')).name}` {m.get('size')}, level {m.get('level')}, model "
              f"`{m.get('model')}`: " + "; ".join(f"{r['mode']} {r['bpp']:.3f} bpp / "
                                                  + ("exact" if r.get("exact") else f"{r['psnr']:.2f} dB")
                                                  for r in j["modes"]), ""]
    L.append(f"![selfcodec modes]({_link(png, readme)})" if png.is_file() else "_modes_figure.png missing_")
    return L


def curves_block(models: Path, readme: Path) -> list[str]:
    curves = sorted(models.glob("*_curve.png")) if models.is_dir() else []
    if not curves:
        return []
    L = ["### Training curves", ""]
    for c in curves:
        side = _load(c.with_suffix(".json"))
        if side and side.get("meta"):
            L.append(stamp_line(side["meta"]))
        else:
            when = _dt.datetime.fromtimestamp(c.stat().st_mtime).astimezone().isoformat(timespec="seconds")
            L.append(f"_{c.name}: file date {when}; no JSON meta beside it_")
        L += ["", f"![{c.stem}]({_link(c, readme)})", ""]
    return L


def build(results: Path, models: Path, readme: Path) -> str:
    L = ["_Generated by `python -m benchmarks.update_readme` from `benchmarks/results/*.json`; "
         "do not edit by hand._", ""]
    blocks = []
    k = _load(results / "kodak.json")
    blocks.append(kodak_block(k, readme, results) if k else ["### Kodak rate–quality", "",
                                                             "_kodak.json missing: run `python -m benchmarks.kodak_rd`_"])
    ks = _load(results / SEARCH_DIR / "kodak.json")
    if ks:
        blocks.append(kodak_block(ks, readme, results / SEARCH_DIR, "### Kodak with the encoder-side latent search"))
    rp = _load(results / REAL_DIR / "kodak.json")
    if rp:
        blocks.append(kodak_block(rp, readme, results / REAL_DIR,
                                  "### Photos that are not Kodak and not in training: BSDS500 test at full size"))
    dc = _load(results / "detail_crops.json")
    if dc and (results / "detail_crops.png").is_file():
        blocks.append(["### Detail crops beside WebP at the same size", "", stamp_line(dc["meta"]), "",
                       f"![detail crops]({_link(results / 'detail_crops.png', readme)})"])
    ll = _load(results / "lossless.json")
    blocks.append(lossless_block(ll) if ll else ["### Lossless", "",
                                                 "_lossless.json missing: run `python -m benchmarks.lossless`_"])
    mem = _load(results / "memory.json")
    blocks.append(memory_block(mem) if mem else ["### Peak memory", "",
                                                 "_memory.json missing: run `python -m benchmarks.memory`_"])
    blocks.append(figure_block(_load(results / "modes_figure.json"), readme, results))
    cb = curves_block(models, readme)
    if cb:
        blocks.append(cb)
    for b in blocks:
        L += b + [""]
    return "\n".join(L).rstrip() + "\n"


def splice(text: str, body: str) -> str:
    """Replace what lies between the markers; append a "## Results" section with them if absent."""
    if START in text and END in text and text.index(START) < text.index(END):
        a = text.index(START) + len(START)
        b = text.index(END)
        return text[:a] + "\n" + body + text[b:]
    return text.rstrip("\n") + f"\n\n{SECTION}\n\n{START}\n{body}{END}\n"


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.update_readme", description=__doc__.split("\n\n")[0])
    p.add_argument("--readme", default=str(REPO_ROOT / "README.md"))
    p.add_argument("--results", default=str(DEFAULT_OUT))
    p.add_argument("--models", default=str(REPO_ROOT / "models"))
    return p.parse_args(argv)


def main(argv=None) -> str:
    args = parse_args(argv)
    readme = Path(args.readme)
    body = build(Path(args.results), Path(args.models), readme)
    text = readme.read_text(encoding="utf-8")  # re-read right before writing: others edit other sections
    new = splice(text, body)
    if new != text:
        tmp = readme.with_name(readme.name + ".tmp-results")
        tmp.write_text(new, encoding="utf-8")
        os.replace(tmp, readme)
    print(f"[update_readme] {'updated' if new != text else 'unchanged'}: {readme}", file=sys.stderr)
    return new


if __name__ == "__main__":
    main()
