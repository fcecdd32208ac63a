#!/usr/bin/env python
"""Fuzz the full decoder (``selfcodec.api.decode``) with damaged real .svae files.

    python -m benchmarks.fuzz_decode --n 10000 --seed 0
    python -m benchmarks.fuzz_decode --n 2000 --preset selfvae-downscale-3l
    python -m benchmarks.fuzz_decode --n 2000 --model models/selfvae-downscale.safetensors

Builds valid files in every mode the model offers (a tiny random-init model unless --model
is given) from small crops of the bundled sample image (RGB, RGBA, grayscale, multi-tile),
then decodes N cases made from them: random stacked mutations (bit flips, byte sets,
inserted and deleted bytes, truncations, duplicated chunks, splices, header and payload
edits with both CRCs fixed up, hostile headers; see ``benchmarks/fuzz_container.py``),
plain CRC-fixed payload edits (which reach the entropy decoders and the model), truncations
and random garbage.

Cases run in worker processes with a memory cap (RLIMIT_AS, --mem-gb) and a per-case time
limit (an alarm in the worker, and the parent kills a worker that does not answer).

Outcomes: the CodecError subclass raised (by name), ``decoded`` (pixels returned, and their
CRC matches the header's), or a failure: ``other:<Exception>``, ``bad-message`` (empty or
multi-line), ``bad-pixels`` (pixels returned that the header's CRC does not name),
``timeout``, ``crash`` (the worker died). Exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import sys
import tempfile
import time
import traceback
import zlib
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.fuzz_container import _fix_crcs, _layout, mutate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ASSET = ROOT / "selfcodec" / "assets" / "kodim23-crop.png"
FAILURES = ("bad-message", "bad-pixels", "timeout", "crash")
TINY = dict(ch=16, growth=8, block_convs=1, mixtures=3, z_ch=8, u_ch=4, flow_hidden=8, flow_blocks=1)


# --------------------------------------------------------------------------- corpus


def build_tiny_model(path: Path, preset: str = "selfvae-downscale", seed: int = 0) -> Path:
    import torch

    from selfcodec.model.checkpoint import save_model
    from selfcodec.model.registry import build_model, make_config
    from selfcodec.nn.blocks import data_dependent_init

    torch.manual_seed(seed)
    model = build_model(make_config(preset, **TINY))
    side = 2 * model.multiple
    data_dependent_init(model, torch.randint(0, 256, (2, 3, side, side)).float())
    save_model(model.eval(), path)
    return path


def make_corpus(model: str) -> dict[str, bytes]:
    """Valid files: every mode on a small crop, plus RGBA, grayscale and multi-tile files."""
    import numpy as np
    from PIL import Image

    from selfcodec import api, zoo
    from selfcodec.codec import modes as M

    net = zoo.load(model)[0]
    m = net.multiple
    with Image.open(ASSET) as im:
        full = np.asarray(im.convert("RGB"))
    img = np.ascontiguousarray(full[160:160 + m, 200:200 + m])
    out = {}
    for mode in M.modes_for(net.cfg.scales):
        out[mode] = api.encode(img, mode, 3, model=model)
    odd = np.ascontiguousarray(full[:m + 3, :m - 5])
    out["rec1-L-odd"] = api.encode(np.asarray(Image.fromarray(odd).convert("L")), "rec1", 1, model=model)
    alpha = np.dstack([img, (np.arange(m * m) % 256).astype(np.uint8).reshape(m, m)])
    out["rec2-RGBA"] = api.encode(alpha, "rec2" if "rec2" in out else "rec1", 5, model=model)
    wide = np.ascontiguousarray(full[:m, :2 * m + 3])
    out["lossless-tiled"] = api.encode(wide, "lossless", 3, model=model, tile=m)
    return out


# --------------------------------------------------------------------------- cases


def payload_edit(data: bytes, rng: random.Random) -> bytes:
    lay = _layout(data)
    if lay is None:
        return data
    end, pcrc = lay
    buf = bytearray(data)
    if len(buf) <= end + 4:
        return data
    for _ in range(rng.choice([1, 1, 2, 3])):
        i = rng.randrange(end + 4, len(buf))
        buf[i] = rng.choice([0, 0xFF, rng.randrange(256), buf[i] ^ (1 << rng.randrange(8))])
    _fix_crcs(buf, end, pcrc)
    return bytes(buf)


def make_case(i: int, rng: random.Random, corpus: list[bytes]) -> tuple[str, bytes]:
    kind = i % 10
    src = rng.choice(corpus)
    if kind == 0:
        return "garbage", rng.choice([b"", b"SVAE", b"SVAE\x01"]) + rng.randbytes(rng.choice([0, 1, 8, 40, 300, 3000]))
    if kind == 1:
        return "truncation", src[: rng.randrange(len(src))]
    if kind in (2, 3):
        return "payload-edit", payload_edit(src, rng)
    return "mutation", mutate(src, rng, corpus)


# --------------------------------------------------------------------------- worker


class _Timeout(BaseException):  # not an Exception: the decoder's handlers must not swallow it
    pass


def _on_alarm(signum, frame):
    raise _Timeout()


def _worker(conn, model: str, mem_bytes: int, timeout: float) -> None:
    import resource
    import signal

    if mem_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (mem_bytes, mem_bytes))
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from selfcodec import api
    from selfcodec.codec import container as C
    from selfcodec.errors import CodecError

    api.decode_rgb(conn.recv_bytes(), model=model)  # warm up: load the model once
    signal.signal(signal.SIGALRM, _on_alarm)
    conn.send("ready")
    while True:
        data = conn.recv_bytes()
        detail = ""
        try:
            signal.setitimer(signal.ITIMER_REAL, timeout)
            try:
                rgb, _ = api.decode_rgb(data, model=model)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            hdr = C.peek_header(data)
            # a lossy file with exact tables guards its coded integers (checked by the decoder), not its pixels
            coded = hdr.coder_version == C.CODER_VERSION and hdr.mode != 5
            ok = coded or zlib.crc32(np.ascontiguousarray(rgb).tobytes()) == hdr.pixel_crc
            outcome = "decoded" if ok else "bad-pixels"
        except _Timeout:
            outcome = "timeout"
        except CodecError as e:
            msg = str(e)
            outcome = type(e).__name__ if msg and "\n" not in msg else "bad-message"
            detail = msg
        except BaseException as e:  # noqa: BLE001 - that is what we look for
            outcome = f"other:{type(e).__name__}"
            detail = traceback.format_exc()
        conn.send((outcome, detail))


class Worker:
    def __init__(self, model: str, mem_bytes: int, timeout: float, warm: bytes):
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child, model, mem_bytes, timeout), daemon=True)
        self.proc.start()
        child.close()
        self.conn.send_bytes(warm)
        if not self.conn.poll(300) or self.conn.recv() != "ready":
            raise SystemExit("fuzz worker did not start")
        self.timeout = timeout

    def run(self, data: bytes) -> tuple[str, str]:
        try:
            self.conn.send_bytes(data)
            if self.conn.poll(self.timeout + 10):
                return self.conn.recv()
            self.kill()
            return "timeout", "worker did not answer"
        except (EOFError, BrokenPipeError, ConnectionResetError):
            self.proc.join(5)
            return "crash", f"worker exit code {self.proc.exitcode}"

    def alive(self) -> bool:
        return self.proc.is_alive()

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)


# --------------------------------------------------------------------------- driver


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10000, help="number of cases")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", help="model name or .safetensors path (default: a tiny random-init model)")
    ap.add_argument("--preset", default="selfvae-downscale",
                    help="family of the tiny model built when --model is not given (vae, selfvae-downscale, "
                         "selfvae-downscale-3l, selfvae-sketch)")
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds per case before it counts as a timeout")
    ap.add_argument("--mem-gb", type=float, default=4.0, help="address-space cap of the worker (0: none)")
    ap.add_argument("--save-failures", type=Path, help="directory to write failing inputs to")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every failure's detail")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    tmp = tempfile.TemporaryDirectory(prefix="fuzz_decode_")
    model = args.model or str(build_tiny_model(Path(tmp.name) / "tiny-fuzz.safetensors", args.preset,
                                                       seed=args.seed))
    t0 = time.perf_counter()
    files = make_corpus(model)
    corpus = list(files.values())
    print(f"model={model}  corpus: " + ", ".join(f"{k}={len(v)}B" for k, v in files.items()), flush=True)

    mem = int(args.mem_gb * (1 << 30))
    worker = Worker(model, mem, args.timeout, corpus[0])
    rng = random.Random(args.seed)
    counts: Counter = Counter()
    by_kind: Counter = Counter()
    failures: list[tuple[int, str, bytes, str]] = []
    try:
        for i in range(args.n):
            kind, case = make_case(i, rng, corpus)
            outcome, detail = worker.run(case)
            counts[outcome] += 1
            by_kind[kind, outcome] += 1
            if outcome.startswith("other:") or outcome in FAILURES:
                failures.append((i, outcome, case, detail))
                if args.verbose or len(failures) <= 3:
                    print(f"case {i} ({kind}, {len(case)} bytes): {outcome}\n{detail}", file=sys.stderr, flush=True)
                if not worker.alive():
                    worker = Worker(model, mem, args.timeout, corpus[0])
            if (i + 1) % 1000 == 0:
                print(f"  {i + 1} cases, {time.perf_counter() - t0:.0f}s", flush=True)
    finally:
        worker.kill()
    dt = time.perf_counter() - t0
    print(f"decode fuzz: cases={args.n} seed={args.seed} {dt:.1f}s")
    for k, v in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"  {k:28s} {v}")
    print("by case kind:")
    for (kind, outcome), v in sorted(by_kind.items()):
        print(f"  {kind:14s} {outcome:28s} {v}")
    if args.save_failures and failures:
        args.save_failures.mkdir(parents=True, exist_ok=True)
        for i, outcome, case, detail in failures:
            (args.save_failures / f"case_{i:06d}.svae").write_bytes(case)
            (args.save_failures / f"case_{i:06d}.txt").write_text(f"{outcome}\n{detail}")
    if failures:
        print(f"FAIL: {len(failures)} cases ended in another exception, bad pixels or message, a timeout or a crash")
        return 1
    print("OK: every case raised a CodecError or decoded to the pixels its CRC names")
    return 0


if __name__ == "__main__":
    sys.exit(main())
