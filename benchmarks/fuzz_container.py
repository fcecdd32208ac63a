#!/usr/bin/env python
"""Fuzz the .svae container parser (or the codec's full decoder) with mutated files.

    python benchmarks/fuzz_container.py --n 10000 --seed 0
    python benchmarks/fuzz_container.py --target api --corpus some/dir/*.svae --n 2000
    python benchmarks/fuzz_container.py --target mypkg.mod:func

Each case is a seed file (synthetic containers, or --corpus files) put through 1-4
stacked mutations: bit flips, byte sets, inserts, deletes, truncation, chunk
duplication, splices, header-field edits with the header CRC fixed up, payload edits
with both CRCs fixed up (so the bytes reach the entropy decoder), plus hand-built
hostile headers with valid CRCs (huge sizes, many tiles, bogus lengths).

Outcomes: the target's expected error (FormatError for the container; any CodecError
for --target api), "parsed", "hang" (over --timeout seconds), or another exception.
Exits 1 if any case ended in another exception or a hang.
"""

from __future__ import annotations

import argparse
import importlib
import random
import signal
import struct
import sys
import time
import traceback
import zlib
from collections import Counter
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from selfcodec.codec import container as C  # noqa: E402
from selfcodec.errors import CodecError, FormatError  # noqa: E402

# --------------------------------------------------------------------------- corpus


def make_corpus(rng: random.Random, n: int = 16) -> list[bytes]:
    """Valid containers of varied shapes (single/multi tile, alpha, empty streams)."""
    out = []
    for i in range(n):
        h = rng.choice([1, 7, 64, 100, 333, 512])
        w = rng.choice([1, 9, 64, 130, 512])
        tiled = i % 2 == 1
        th = rng.choice([16, 32, 64]) if tiled else 0
        tw = rng.choice([16, 32, 64]) if tiled else 0
        n_streams = rng.randint(1, 3)
        header = C.Header(
            model_name=rng.choice(["", "sv", "selfvae-base", "modèle"]),
            model_hash=bytes(rng.randrange(256) for _ in range(8)),
            mode=rng.randrange(4),
            level=rng.randrange(8),
            height=h,
            width=w,
            colour=rng.randrange(3),
            pad_h=rng.randrange(64),
            pad_w=rng.randrange(64),
            tile_h=th,
            tile_w=tw,
            n_streams=n_streams,
            pixel_crc=rng.getrandbits(32),
        )
        tiles = [
            [rng.randbytes(rng.choice([0, 1, 5, 40, 200])) for _ in range(n_streams)]
            for _ in range(header.n_tiles)
        ]
        alpha = rng.randbytes(rng.randrange(30)) if rng.random() < 0.4 else None
        out.append(C.pack(header, tiles, alpha))
    return out


def load_corpus(paths: list[str]) -> list[bytes]:
    files: list[Path] = []
    for p in map(Path, paths):
        files.extend(sorted(p.glob("*.svae")) if p.is_dir() else [p])
    return [f.read_bytes() for f in files]


# --------------------------------------------------------------------------- mutations


def _layout(data: bytes) -> tuple[int, int] | None:
    """(header_end, payload_crc offset) of a well-formed container, else None."""
    try:
        end = C.header_size(data) - 4
    except FormatError:
        return None
    pos = 8 + data[7] + 8 + 8
    _, pos = C.decode_varint(data, pos)
    _, pos = C.decode_varint(data, pos)
    return end, pos + 1 + 4


def _fix_crcs(buf: bytearray, header_end: int, payload_crc_off: int) -> None:
    buf[payload_crc_off : payload_crc_off + 4] = struct.pack("<I", zlib.crc32(bytes(buf[header_end + 4 :])))
    buf[header_end : header_end + 4] = struct.pack("<I", zlib.crc32(bytes(buf[:header_end])))


def hostile(rng: random.Random) -> bytes:
    """A header with valid CRCs whose fields are extreme or inconsistent."""

    def pick(*choices):
        return rng.choice(choices)

    flags = pick(0, 1, 2, 3, 4, 5, 6, 7, 8, 0x80, 0xFF)
    n_streams = pick(0, 1, 2, 255)
    n_lengths = pick(0, 1, 2, 3, 10)
    lengths = [pick(0, 1, 5, 1000, 2**31, 2**35 - 1) for _ in range(n_lengths)]
    payload = rng.randbytes(pick(0, 1, 10, 100))
    name = pick(b"", b"ok", b"\xff\xfe", b"x" * 64, b"x" * 65, b"x" * 255)
    return C._pack_raw(
        format_version=pick(1, 1, 1, 0, 2, 255),
        coder_version=pick(1, 1, 0, 2, 255),
        flags=flags,
        name=name,
        model_hash=rng.randbytes(8),
        mode=rng.randrange(256),
        level=rng.randrange(256),
        height=pick(0, 1, 100, 16384, 65535),
        width=pick(0, 1, 100, 16384, 65535),
        pad_h=rng.randrange(256),
        pad_w=rng.randrange(256),
        tile_h=pick(0, 1, 2, 64, 65535, 65536, 2**35 - 1),
        tile_w=pick(0, 1, 2, 64, 65535, 65536, 2**35 - 1),
        n_streams=n_streams,
        pixel_crc=rng.getrandbits(32),
        alpha_len=pick(None, 0, 5, 2**35 - 1),
        lengths=lengths,
        payload=payload,
        payload_crc=pick(None, None, 0),
    )


def mutate(data: bytes, rng: random.Random, corpus: list[bytes] | None = None) -> bytes:
    """Apply 1-4 random mutations."""
    buf = bytearray(data)
    for _ in range(rng.choice([1, 1, 1, 2, 3, 4])):
        kind = rng.randrange(11)
        n = len(buf)
        if kind == 0 and n:  # bit flip
            i = rng.randrange(n)
            buf[i] ^= 1 << rng.randrange(8)
        elif kind == 1 and n:  # byte set (often to an extreme)
            buf[rng.randrange(n)] = rng.choice([0, 0xFF, 0x80, 0x7F, rng.randrange(256)])
        elif kind == 2:  # insert
            i = rng.randrange(n + 1)
            buf[i:i] = rng.randbytes(rng.choice([1, 1, 2, 4, 17]))
        elif kind == 3 and n:  # delete
            i = rng.randrange(n)
            del buf[i : i + rng.choice([1, 1, 2, 4, 17])]
        elif kind == 4:  # truncate
            del buf[rng.randrange(n + 1) :]
        elif kind == 5 and n:  # duplicate a chunk
            i = rng.randrange(n)
            j = min(n, i + rng.randrange(1, 32))
            buf[j:j] = buf[i:j]
        elif kind == 6:  # append garbage
            buf += rng.randbytes(rng.randrange(1, 16))
        elif kind == 7 and corpus:  # splice with another file
            other = rng.choice(corpus)
            i = rng.randrange(n + 1)
            j = rng.randrange(len(other) + 1)
            buf = buf[:i] + bytearray(other[j:])
        elif kind in (8, 9):  # header edit (8) or payload edit (9), CRCs fixed up
            lay = _layout(bytes(buf))
            if lay is None:
                continue
            end, pcrc = lay
            lo, hi = (4, end) if kind == 8 else (end + 4, len(buf))
            if hi <= lo:
                continue
            for _ in range(rng.randint(1, 3)):
                i = rng.randrange(lo, hi)
                if kind == 8 and lo <= pcrc <= i < pcrc + 4:
                    continue
                buf[i] = rng.choice([0, 0xFF, 0x80, rng.randrange(256), buf[i] ^ (1 << rng.randrange(8))])
            _fix_crcs(buf, end, pcrc)
        elif kind == 10:  # replace with a hostile header
            buf = bytearray(hostile(rng))
    return bytes(buf)


# --------------------------------------------------------------------------- driver


class _Hang(Exception):
    pass


def _alarm(signum, frame):
    raise _Hang()


def fuzz(
    target: Callable[[bytes], object],
    corpus: list[bytes],
    n: int,
    seed: int,
    accept: tuple[type[BaseException], ...] = (FormatError,),
    timeout: float | None = None,
    verbose: bool = True,
) -> tuple[Counter, list[tuple[bytes, str]]]:
    """Run ``n`` mutated cases through ``target``; return (outcome counts, failures)."""
    rng = random.Random(seed)
    counts: Counter = Counter()
    failures: list[tuple[bytes, str]] = []
    use_alarm = timeout is not None and hasattr(signal, "setitimer")
    if use_alarm:
        old = signal.signal(signal.SIGALRM, _alarm)
    try:
        for i in range(n):
            case = mutate(rng.choice(corpus), rng, corpus) if i % 50 else rng.randbytes(rng.randrange(64))
            try:
                if use_alarm:
                    signal.setitimer(signal.ITIMER_REAL, timeout)
                try:
                    target(case)
                finally:
                    if use_alarm:
                        signal.setitimer(signal.ITIMER_REAL, 0)
                counts["parsed"] += 1
            except _Hang:
                counts["hang"] += 1
                failures.append((case, f"hang (> {timeout}s)"))
            except accept as e:
                counts[type(e).__name__] += 1
                if "\n" in str(e) or not str(e):
                    counts["bad message"] += 1
                    failures.append((case, f"{type(e).__name__} with empty or multi-line message: {e!r}"))
            except Exception:  # noqa: BLE001 - that is the point
                tb = traceback.format_exc()
                counts["other exception"] += 1
                failures.append((case, tb))
                if verbose and len(failures) <= 3:
                    print(f"case {i}: {len(case)} bytes {case[:48].hex()}...\n{tb}", file=sys.stderr)
    finally:
        if use_alarm:
            signal.signal(signal.SIGALRM, old)
    return counts, failures


def resolve_target(name: str) -> tuple[Callable[[bytes], object], tuple[type[BaseException], ...]]:
    if name == "container":
        return C.unpack, (FormatError,)
    if name == "api":
        try:  # lazily: needs torch and the model
            api = importlib.import_module("selfcodec.api")
        except ImportError as e:
            raise SystemExit(f"--target api: cannot import selfcodec.api ({e})") from None
        return api.decode, (CodecError,)
    if ":" in name:
        mod, _, func = name.partition(":")
        return getattr(importlib.import_module(mod), func), (CodecError,)
    raise SystemExit(f"unknown target {name!r}: use container, api or module:function")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10000, help="number of cases")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target", default="container", help="container | api | module:function")
    ap.add_argument("--corpus", nargs="*", default=[], help=".svae files or directories to mutate")
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds per case before it counts as a hang")
    ap.add_argument("--save-failures", type=Path, help="directory to write failing inputs to")
    args = ap.parse_args(argv)

    target, accept = resolve_target(args.target)
    corpus = load_corpus(args.corpus) if args.corpus else make_corpus(random.Random(args.seed))
    if not corpus:
        raise SystemExit("empty corpus")
    t0 = time.perf_counter()
    counts, failures = fuzz(target, corpus, args.n, args.seed, accept, args.timeout)
    dt = time.perf_counter() - t0
    print(f"target={args.target} cases={args.n} seed={args.seed} corpus={len(corpus)} files  {dt:.1f}s")
    for k, v in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"  {k:24s} {v}")
    if args.save_failures and failures:
        args.save_failures.mkdir(parents=True, exist_ok=True)
        for j, (case, why) in enumerate(failures):
            (args.save_failures / f"fail_{j:04d}.svae").write_bytes(case)
            (args.save_failures / f"fail_{j:04d}.txt").write_text(why)
    if failures:
        print(f"FAIL: {len(failures)} cases ended in an unexpected exception, bad message or hang")
        return 1
    print("OK: no unexpected exceptions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
