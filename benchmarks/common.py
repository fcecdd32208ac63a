"""Shared helpers for the benchmark scripts: data loading, provenance stamps,
interpolation and the optional selfcodec hook."""

from __future__ import annotations

import importlib
import shlex
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from selfcodec import provenance

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
DEFAULT_KODAK = SHARED / "data" / "kodak"
DEFAULT_CIFAR = SHARED / "data" / "cifar10" / "test.png"
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results"


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def list_images(folder: str | Path) -> list[Path]:
    """The PNG and JPEG files of a folder, sorted (Kodak's PNGs; BSDS500's JPEGs at quality ~96)."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise SystemExit(f"no PNG or JPEG files in {folder}")
    return files



def load_rgb(path: str | Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.ascontiguousarray(np.asarray(im.convert("RGB")), dtype=np.uint8)


def center_crop(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    ch, cw = min(size, h), min(size, w)
    y, x = (h - ch) // 2, (w - cw) // 2
    return np.ascontiguousarray(img[y:y + ch, x:x + cw])


def load_images(files, crop: int = 0) -> list:
    """(stem, RGB array) per file, centre-cropped to crop x crop when crop > 0."""
    return [(f.stem, center_crop(load_rgb(f), crop) if crop else load_rgb(f)) for f in files]


def start_run(tag: str, out: str, argv=None):
    """What every benchmark does first: the command line as run (for the JSON), the output
    folder (created), and a list of notes with a note() that also prints them."""
    full_argv = [sys.argv[0]] + (list(argv) if argv is not None else sys.argv[1:])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []

    def note(msg):
        print(f"[{tag}] {msg}", file=sys.stderr)
        notes.append(msg)

    return full_argv, out, notes, note


def usable_codecs(codecs, note):
    """The codecs that can run here, and a record of those skipped (why) for the JSON."""
    skipped = []
    for c in codecs:
        if not c.available:
            note(f"codec {c.name} skipped: {c.reason}")
            skipped.append({"codec": c.name, "reason": c.reason})
        elif c.reason:
            note(f"codec {c.name}: {c.reason}")
    return [c for c in codecs if c.available], skipped


def stamp(argv: list[str] | None = None, extra_versions: dict | None = None) -> dict:
    """Provenance: date, machine, CPU, versions and the exact command line."""
    argv = sys.argv if argv is None else argv
    command = " ".join(shlex.quote(a) for a in ([Path(sys.executable).name, "-m", _module_name()] + list(argv[1:])))
    return provenance.stamp(command, argv, extra_versions)


def _module_name() -> str:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:
        return spec.name
    return Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else "?"


def interp_at(bpps, vals, target: float):
    """Linear interpolation of a quality value at ``target`` bpp in log-rate;
    None outside the measured range (no extrapolation)."""
    b = np.asarray(bpps, dtype=float)
    v = np.asarray(vals, dtype=float)
    ok = np.isfinite(b) & np.isfinite(v) & (b > 0)
    b, v = b[ok], v[ok]
    if b.size < 2:
        return None
    o = np.argsort(b)
    b, v = b[o], v[o]
    if target < b[0] or target > b[-1]:
        return None
    return float(np.interp(np.log(target), np.log(b), v))


def fmt(x, nd=2, suffix=""):
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "—"
    return f"{x:.{nd}f}{suffix}"


def load_selfcodec_api(disabled: bool = False):
    """Import ``selfcodec.api`` lazily.  Returns (module or None, note)."""
    if disabled:
        return None, "selfcodec skipped (--no-selfcodec)"
    try:
        api = importlib.import_module("selfcodec.api")
    except Exception as e:  # module missing or broken: say so, never hide it
        return None, f"selfcodec skipped: cannot import selfcodec.api ({e!r})"
    missing = [n for n in ("encode", "decode") if not hasattr(api, n)]
    if missing:
        return None, f"selfcodec skipped: selfcodec.api lacks {missing}"
    return api, "selfcodec.api found"


def to_jsonable(o):
    if isinstance(o, dict):
        return {str(k): to_jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [to_jsonable(v) for v in o]
    if isinstance(o, (np.floating, float)):
        f = float(o)
        return f if np.isfinite(f) else None
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, Path):
        return str(o)
    return o
