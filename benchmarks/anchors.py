"""Parse the published reference curves in ``anchors.md`` at run time.

The file is Markdown: ``## Section`` headings, bold titles such as
``**JPEG (Pillow 7.1.2)** (`results/image/kodak/jpeg.json`)`` followed by a
pipe table, bullet lines ``- name: bpp→msssim/psnr; ...`` for MS-SSIM-trained
models, and free text for some lossless results.  Nothing here is hard-coded:
if the file changes, the plots and tables follow.

Default location: ``<repo>/../shared/reference/anchors.md``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ANCHORS = REPO_ROOT.parent / "shared" / "reference" / "anchors.md"

_NUM = re.compile(r"^[≥<>~]?-?\d+(?:\.\d+)?$")


def _num(cell: str) -> Any:
    c = cell.strip()
    if _NUM.match(c):
        lower_bound = c.startswith("≥")
        v = float(c.lstrip("≥<>~"))
        return {"value": v, "lower_bound": True} if lower_bound else v
    return c


def parse_tables(text: str) -> list[dict]:
    """All pipe tables with their section, bold title and source path."""
    tables: list[dict] = []
    section = ""
    title = ""
    source = ""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].rstrip()
        if line.startswith("## "):
            section = line[3:].strip()
            title, source = "", ""
        elif line.startswith("**"):
            m = re.match(r"\*\*(.+?)\*\*\s*(.*)", line)
            if m:
                title = m.group(1).strip()
                src = re.findall(r"`([^`]+)`", m.group(2))
                source = src[0] if src else m.group(2).strip()
        elif line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                block.append(lines[i].strip())
                i += 1
            rows = [[c.strip() for c in r.strip("|").split("|")] for r in block]
            header = rows[0]
            body = [r for r in rows[1:] if not all(re.fullmatch(r":?-+:?", c) for c in r)]
            tables.append({
                "section": section,
                "title": title,
                "source": source,
                "columns": header,
                "rows": [[_num(c) for c in r] for r in body],
            })
            continue
        i += 1
    return tables


def _slug(title: str) -> str:
    t = re.sub(r"\(.*?\)", "", title)
    t = t.replace(",", " ")
    return re.sub(r"[^a-z0-9.+-]+", "-", t.lower()).strip("-")


def lossy_curves(text: str) -> dict[str, dict]:
    """Kodak lossy curves: ``{key: {label, source, bpp[], psnr[], ms_ssim[], enc_s[], dec_s[]}}``.

    Includes tables with ``bpp`` and ``PSNR`` columns and the bullet lists of
    MS-SSIM-trained models (keys suffixed ``-msssim``, ``kind='ms-ssim'``).
    """
    curves: dict[str, dict] = {}
    for t in parse_tables(text):
        cols = [c.lower() for c in t["columns"]]
        if "bpp" not in cols or not any(c.startswith("psnr") for c in cols):
            continue
        ib = cols.index("bpp")
        ip = next(k for k, c in enumerate(cols) if c.startswith("psnr"))
        im = next((k for k, c in enumerate(cols) if c.startswith("ms-ssim")), None)
        ie = cols.index("enc s") if "enc s" in cols else None
        idd = cols.index("dec s") if "dec s" in cols else None
        rows = sorted((r for r in t["rows"] if isinstance(r[ib], float)), key=lambda r: r[ib])
        key = _slug(t["title"])
        curves[key] = {
            "label": t["title"],
            "section": t["section"],
            "source": t["source"],
            "kind": "mse",
            "bpp": [r[ib] for r in rows],
            "psnr": [r[ip] for r in rows],
            "ms_ssim": [r[im] for r in rows] if im is not None else None,
            "enc_s": [r[ie] for r in rows] if ie is not None else None,
            "dec_s": [r[idd] for r in rows] if idd is not None else None,
        }
    # bullet lines: "- name: 0.116→0.9296/25.30; 0.173→..."
    for m in re.finditer(r"^- ([^:\n]+):\s*(.+)$", text, flags=re.M):
        pts = re.findall(r"(\d+(?:\.\d+)?)→(\d+(?:\.\d+)?)/(\d+(?:\.\d+)?)", m.group(2))
        if len(pts) < 2:
            continue
        pts = sorted((float(a), float(b), float(c)) for a, b, c in pts)
        name = m.group(1).strip()
        curves[_slug(name) + "-msssim"] = {
            "label": f"{name} (MS-SSIM-trained)",
            "section": "Kodak, lossy",
            "source": "results/image/kodak/compressai-*_ms-ssim_cuda.json",
            "kind": "ms-ssim",
            "bpp": [p[0] for p in pts],
            "ms_ssim": [p[1] for p in pts],
            "psnr": [p[2] for p in pts],
            "enc_s": None,
            "dec_s": None,
        }
    return curves


def lossless_tables(text: str) -> dict:
    """Lossless section: its pipe tables plus the free-text lines (verbatim),
    and ARDM Table 3 pairs parsed as ``{method: {per_image, dataset}}``."""
    sec = ""
    m = re.search(r"^## .*[Ll]ossless.*$", text, flags=re.M)
    if m:
        nxt = re.search(r"^## ", text[m.end():], flags=re.M)
        sec = text[m.start(): m.end() + (nxt.start() if nxt else len(text))]
    tables = [t for t in parse_tables(sec)]
    notes = [ln.strip() for ln in sec.splitlines()[1:]
             if ln.strip() and not ln.strip().startswith("|")]
    ardm: dict[str, dict] = {}
    for ln in notes:
        if "ARDM" in ln and "Table 3" in ln:
            body = ln.split(":", 1)[1] if ":" in ln else ln
            for mm in re.finditer(r"([A-Za-z][\w+\-]*(?:-\w+)*)\s+(≥?\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)", body):
                ardm[mm.group(1)] = {"per_image": mm.group(2), "dataset": float(mm.group(3))}
    # Bit-Swap style table as {method: {dataset: value}}
    by_method: dict[str, dict] = {}
    for t in tables:
        cols = t["columns"]
        for r in t["rows"]:
            by_method[str(r[0])] = {c: v for c, v in zip(cols[1:], r[1:])}
    return {"tables": tables, "by_method": by_method, "ardm_table3_cifar10": ardm, "notes": notes}


def load(path: str | Path | None = None) -> tuple[str | None, str]:
    """Return (text or None, message)."""
    p = Path(path) if path else DEFAULT_ANCHORS
    if not p.is_file():
        return None, f"anchors file not found at {p}: plotting without published curves"
    return p.read_text(encoding="utf-8"), f"anchors parsed from {p}"


if __name__ == "__main__":  # pragma: no cover - manual inspection
    import json
    import sys

    txt, msg = load(sys.argv[1] if len(sys.argv) > 1 else None)
    print(msg)
    if txt:
        for k, v in lossy_curves(txt).items():
            print(f"{k:40s} {v['kind']:8s} n={len(v['bpp'])} bpp {v['bpp'][0]}..{v['bpp'][-1]}")
        print(json.dumps({k: v for k, v in lossless_tables(txt).items() if k != "tables"}, indent=1,
                         ensure_ascii=False))
