"""Peak memory and wall time of selfcodec on a large image, one child process per run.

    python -m benchmarks.memory [--size 4000x3000] [--modes rec2,lossless] [--level N] [--model PATH]
                                [--data DIR] [--no-tile-ref] [--out benchmarks/results]

The test image: a Kodak image (``--data``, default ../shared/data/kodak; kodim23 if
present) resized to ``--size`` with Lanczos; without Kodak, a smooth synthetic
photo-like image (low-frequency colour fields, soft edges, mild grain).  For every
mode, a child process encodes it (``selfcodec.api.encode``) and another child
decodes the file (``selfcodec.api.decode``); each child reports its peak resident
set (``VmHWM`` from /proc/self/status), its resident set after importing torch and
loading the model (before coding), and the wall time of the call.  The parent also
records ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` (the largest peak of any child so far).

The API codes in tiles of at most ``selfcodec.api.TILE`` pixels per side, so the
working set of the networks does not grow with the image.  With ``--tile-ref`` (default)
the same runs are repeated on one TILE x TILE image; the bound reported is
``peak(N pixels) <= peak(one tile) + slope * (N - TILE^2)`` with the slope measured
between the two sizes (bytes per extra pixel: the image, its reconstruction and the
file, not the networks).  Writes ``memory.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import DEFAULT_KODAK, DEFAULT_OUT, REPO_ROOT, list_images, load_rgb, stamp, to_jsonable


def _status_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _peak_mib() -> float:
    kib = _status_kib("VmHWM")
    if kib is None:  # not Linux: ru_maxrss is KiB on Linux, bytes on macOS
        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        kib = r // 1024 if sys.platform == "darwin" else r
    return kib / 1024.0


def _rss_mib() -> float | None:
    kib = _status_kib("VmRSS")
    return None if kib is None else kib / 1024.0


# ----------------------------------------------------------------------------
# Child
# ----------------------------------------------------------------------------

def child(args) -> None:
    import torch
    torch.set_num_threads(args.threads)
    from selfcodec import api, zoo
    zoo.load(args.model)
    before = {"rss_mib": _rss_mib(), "peak_mib": _peak_mib()}
    if args.child == "encode":
        img = np.load(args.input)
        t0 = time.perf_counter()
        data = api.encode(img, mode=args.mode, level=args.level, model=args.model)
        wall = time.perf_counter() - t0
        Path(args.output).write_bytes(data)
        extra = {"bytes": len(data), "bpp": 8.0 * len(data) / (img.shape[0] * img.shape[1])}
    else:
        data = Path(args.input).read_bytes()
        t0 = time.perf_counter()
        out = api.decode(data, model=args.model, as_array=True)
        wall = time.perf_counter() - t0
        extra = {"shape": list(out.shape)}
    print(json.dumps({"op": args.child, "mode": args.mode, "wall_s": wall, "peak_rss_mib": _peak_mib(),
                      "after_model_load": before, **extra}))


# ----------------------------------------------------------------------------
# Parent
# ----------------------------------------------------------------------------

def synthetic_photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth photo-like RGB image: low-frequency colour fields, soft-edged shapes, grain."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy /= h
    xx /= w
    img = np.zeros((h, w, 3), np.float32)
    for c in range(3):
        img[..., c] = 90 + 60 * xx + 40 * yy * (c - 1)
        for _ in range(6):
            fx, fy, ph = rng.uniform(0.5, 6, 2).tolist() + [rng.uniform(0, 6.3)]
            img[..., c] += rng.uniform(5, 20) * np.sin(2 * np.pi * (fx * xx + fy * yy) + ph)
    for _ in range(12):  # soft discs
        cy, cx, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.03, 0.2)
        d = np.sqrt((yy - cy) ** 2 + ((xx - cx) * w / h) ** 2)
        m = 0.5 * (1.0 - np.tanh((d - r) * 150.0))
        img += m[..., None] * (rng.uniform(-60, 60, 3).astype(np.float32))
    img += rng.normal(0, 2.0, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_image(size: tuple[int, int], data: str | None) -> tuple[np.ndarray, str]:
    w, h = size
    if data and Path(data).is_dir():
        try:
            files = list_images(data)
            pick = next((f for f in files if f.stem == "kodim23"), files[0])
            from PIL import Image
            src = Image.fromarray(load_rgb(pick)).resize((w, h), Image.LANCZOS)
            return np.ascontiguousarray(np.asarray(src)), f"{pick} resized to {w}x{h} (Lanczos)"
        except SystemExit:
            pass
    return synthetic_photo(h, w), f"synthetic smooth photo-like image {w}x{h} (no Kodak folder at {data})"


def _run_child(op: str, mode: str, inp: Path, outp: Path | None, args) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.memory", "--child", op, "--mode", mode, "--level", str(args.level),
           "--input", str(inp), "--threads", str(args.threads)]
    if outp is not None:
        cmd += ["--output", str(outp)]
    if args.model:
        cmd += ["--model", args.model]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(REPO_ROOT))
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        return {"op": op, "mode": mode, "error": (p.stderr or p.stdout).strip().splitlines()[-1:],
                "returncode": p.returncode}
    r = json.loads(p.stdout.strip().splitlines()[-1])
    r["process_wall_s"] = wall
    r["ru_maxrss_children_mib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    return r


def measure(img: np.ndarray, modes: list[str], args, tmp: Path, tag: str) -> dict:
    inp = tmp / f"{tag}.npy"
    np.save(inp, img)
    h, w = img.shape[:2]
    out = {}
    for mode in modes:
        f = tmp / f"{tag}-{mode}.svae"
        e = _run_child("encode", mode, inp, f, args)
        print(f"[memory] {tag} {mode} encode: {_fmt_run(e)}", file=sys.stderr)
        d = _run_child("decode", mode, f, None, args) if f.is_file() else {"error": "no file (encode failed)"}
        print(f"[memory] {tag} {mode} decode: {_fmt_run(d)}", file=sys.stderr)
        if d.get("shape") and d["shape"][:2] != [h, w]:
            d["error"] = f"decoded shape {d['shape']} != {[h, w]}"
        for r in (e, d):
            if "wall_s" in r:
                r["mpix_s"] = h * w / 1e6 / r["wall_s"]
        out[mode] = {"encode": e, "decode": d}
    return {"width": w, "height": h, "megapixels": h * w / 1e6, "modes": out}


def _fmt_run(r: dict) -> str:
    if "error" in r:
        return f"ERROR {r['error']}"
    return f"peak {r['peak_rss_mib']:.0f} MiB (after model load {r['after_model_load']['peak_mib']:.0f}), " \
           f"{r['wall_s']:.1f} s"


def bounds(full: dict, ref: dict | None, tile: int) -> dict:
    out = {}
    for mode, fr in full["modes"].items():
        row = {}
        for op in ("encode", "decode"):
            big = fr[op].get("peak_rss_mib")
            if big is None:
                continue
            r = {"peak_mib": big}
            small = ref["modes"].get(mode, {}).get(op, {}).get("peak_rss_mib") if ref else None
            if small is not None:
                dpx = (full["width"] * full["height"] - ref["width"] * ref["height"])
                slope = (big - small) * 2 ** 20 / dpx if dpx > 0 else None
                r.update({"peak_one_tile_mib": small, "bytes_per_extra_pixel": slope,
                          "bound": f"peak <= {small:.0f} MiB + {max(slope or 0, 0):.1f} B x (pixels - {tile}^2)"})
            row[op] = r
        out[mode] = row
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="4000x3000", help="WxH of the test image")
    p.add_argument("--modes", default="rec2,lossless", help="comma-separated modes ('all': every mode)")
    p.add_argument("--level", type=int, default=None, help="quality level (default: the API's default)")
    p.add_argument("--model", default=None, help="model name or .safetensors path (default: the shipped default)")
    p.add_argument("--data", default=str(DEFAULT_KODAK), help="Kodak folder (absent: synthetic image)")
    p.add_argument("--threads", type=int, default=1, help="torch threads in each child (default 1)")
    p.add_argument("--no-tile-ref", action="store_true", help="skip the one-tile reference runs")
    p.add_argument("--out", default=str(DEFAULT_OUT))
    # internal: the child process
    p.add_argument("--child", choices=["encode", "decode"], help=argparse.SUPPRESS)
    p.add_argument("--mode", help=argparse.SUPPRESS)
    p.add_argument("--input", help=argparse.SUPPRESS)
    p.add_argument("--output", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> dict | None:
    args = parse_args(argv)
    if args.child:
        child(args)
        return None
    full_argv = [sys.argv[0]] + (list(argv) if argv is not None else sys.argv[1:])
    from selfcodec import api, zoo
    from selfcodec.codec.files import NO_STORED_ENV
    if args.level is None:
        args.level = api.DEFAULT_LEVEL
    modes = list(api.MODES) if args.modes == "all" else [m.strip() for m in args.modes.split(",") if m.strip()]
    w, h = (int(v) for v in args.size.lower().split("x"))
    img, source = make_image((w, h), args.data)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="selfcodec-mem-") as td:
        tmp = Path(td)
        full = measure(img, modes, args, tmp, f"{w}x{h}")
        ref = None
        if not args.no_tile_ref and h * w > api.TILE * api.TILE:
            y0, x0 = (h - min(h, api.TILE)) // 2, (w - min(w, api.TILE)) // 2
            ref = measure(np.ascontiguousarray(img[y0:y0 + api.TILE, x0:x0 + api.TILE]), modes, args, tmp,
                          f"tile{api.TILE}")
    wall = time.perf_counter() - t0
    meta = stamp(full_argv)
    meta.update({"wall_s": wall, "image": source, "level": args.level, "model": args.model or "default",
                 "model_hash": zoo.load(args.model)[1].hex(), "torch_threads": args.threads, "tile": api.TILE,
                 "method": "peak RSS = VmHWM of each child process (/proc/self/status), read at its end; "
                           "wall_s = the encode/decode call alone, process_wall_s = the whole child "
                           "(interpreter, torch import, model load)"})
    result = {"meta": meta, "full": full, "one_tile": ref, "bound": bounds(full, ref, api.TILE),
              "notes": [f"the API codes in tiles of at most {api.TILE}x{api.TILE} pixels (selfcodec.api.TILE), so "
                        "the networks' working set is that of one tile whatever the image size; what grows with "
                        "the image is the uint8 input, the reconstruction and the file"]}
    if os.environ.get(NO_STORED_ENV) == "1":
        result["notes"].append(f"run with {NO_STORED_ENV}=1: lossless files are the model's even where stored "
                               "pixels would be smaller (the model's memory, not the fallback's)")
    (out / "memory.json").write_text(json.dumps(to_jsonable(result), indent=1))
    print(f"[memory] {wall:.0f} s; wrote {out / 'memory.json'}", file=sys.stderr)
    for mode, b in result["bound"].items():
        for op, r in b.items():
            print(f"  {mode:9s} {op}: peak {r['peak_mib']:.0f} MiB" + (f"; {r['bound']}" if "bound" in r else ""))
    return result


if __name__ == "__main__":
    main()
