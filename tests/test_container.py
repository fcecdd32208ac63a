"""Tests of the .svae container (selfcodec.codec.container). Fast: pure Python, no data files."""

from __future__ import annotations

import ast
import importlib.util
import random
import re
import struct
import time
import tracemalloc
import zlib
from pathlib import Path

import pytest

from selfcodec.codec import container as C
from selfcodec.codec.container import (
    CODER_VERSION,
    FLOAT_CODER_VERSION,
    COLOUR_L,
    COLOUR_RGB,
    COLOUR_RGBA,
    FIXED_HEADER_BYTES,
    FORMAT_VERSION,
    MAX_NAME_BYTES,
    UPSCALE_FORMAT_VERSION,
    Header,
    pack,
    peek_header,
    tile_grid,
    unpack,
)
from selfcodec.errors import FormatError

ROOT = Path(__file__).resolve().parents[1]


def _header(**kw) -> Header:
    base = dict(
        model_name="sv-base",
        model_hash=bytes(range(8)),
        mode=1,
        level=3,
        height=100,
        width=130,
        colour=COLOUR_RGB,
        pad_h=12,
        pad_w=14,
        tile_h=0,
        tile_w=0,
        n_streams=2,
        pixel_crc=0xDEADBEEF,
    )
    base.update(kw)
    return Header(**base)


def _tiles(h: Header, rng: random.Random, max_len: int = 60) -> list[list[bytes]]:
    return [[rng.randbytes(rng.randrange(max_len)) for _ in range(h.n_streams)] for _ in range(h.n_tiles)]


def _small_files() -> list[bytes]:
    rng = random.Random(1)
    h1 = _header()
    h2 = _header(tile_h=64, tile_w=48, n_streams=3, colour=COLOUR_RGBA)
    return [
        pack(h1, _tiles(h1, rng, 20)),
        pack(h2, _tiles(h2, rng, 12), alpha=b"alpha-plane"),
    ]


def _raw(**kw) -> bytes:
    """A file with arbitrary field values but correct CRCs (via the unchecked writer)."""
    base = dict(
        format_version=FORMAT_VERSION,
        coder_version=CODER_VERSION,
        flags=COLOUR_RGB,
        name=b"m",
        model_hash=bytes(8),
        mode=0,
        level=0,
        height=16,
        width=16,
        pad_h=0,
        pad_w=0,
        tile_h=0,
        tile_w=0,
        n_streams=1,
        pixel_crc=0,
        alpha_len=None,
        lengths=[3],
        payload=b"abc",
    )
    base.update(kw)
    return C._pack_raw(**base)


def _load_fuzzer():
    spec = importlib.util.spec_from_file_location("fuzz_container", ROOT / "benchmarks" / "fuzz_container.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("alpha", [None, b"", b"\x00" * 5 + b"compressed alpha"])
@pytest.mark.parametrize(
    "kw",
    [
        {},  # single tile
        dict(tile_h=32, tile_w=32),  # 4 x 5 grid with partial edge tiles
        dict(tile_h=64, tile_w=0),  # split rows only
        dict(height=1, width=1, n_streams=1, colour=COLOUR_L),
        dict(model_name="", n_streams=255, tile_h=50, tile_w=65),
        dict(model_name="é" * 32, mode=255, level=255, pad_h=255, pad_w=255, pixel_crc=0xFFFFFFFF),
        dict(height=65535, width=4096, tile_h=4096, tile_w=4096, coder_version=0),
    ],
)
def test_round_trip(kw, alpha):
    h = _header(**kw)
    tiles = _tiles(h, random.Random(len(kw)), 40 if h.n_tiles * h.n_streams < 200 else 3)
    data = pack(h, tiles, alpha)
    h2, tiles2, alpha2 = unpack(data, check_coder_version=(h.coder_version == CODER_VERSION))
    assert h2 == h
    assert tiles2 == tiles
    assert alpha2 == alpha
    assert peek_header(data) == h
    assert all(type(s) is bytes for t in tiles2 for s in t)


def test_upscale_choice_round_trips_as_format_version_3():
    h = _header(upscale_choice=True, tile_h=64, tile_w=64)
    data = pack(h, _tiles(h, random.Random(3)))
    assert data[4] == UPSCALE_FORMAT_VERSION and data[6] & 0x10
    h2 = unpack(data)[0]
    assert h2.upscale_choice and peek_header(data) == h2
    assert pack(_header(), _tiles(_header(), random.Random(3)))[4] == FORMAT_VERSION  # without it: version 1
    layered = _header(upscale_choice=True, layer_crcs=(1, 2))  # a layered file's choices: version 3 too
    data = C.pack_layers(layered, [[b"ab"], [b"c"]])
    assert data[4] == UPSCALE_FORMAT_VERSION and data[6] & 0x18 == 0x18
    assert C.unpack_layers(data)[0].upscale_choice


_META = {"icc_profile": b"\x00\x00\x02\x30ICC profile bytes", "exif": b"Exif\x00\x00II*\x00", "xmp": b"<x:xmpmeta/>"}


@pytest.mark.parametrize("kw", [{}, dict(upscale_choice=True), dict(layer_crcs=(1, 2)),
                                dict(upscale_choice=True, layer_crcs=(1, 2))])
def test_metadata_round_trips_as_format_version_4(kw):
    for metadata in (_META, {"exif": _META["exif"]}):
        h = _header(metadata=metadata, **kw)
        data = pack(h, _tiles(h, random.Random(4)), alpha=b"alpha")
        assert data[4] == C.METADATA_FORMAT_VERSION and data[6] & 0x20
        h2, tiles, alpha = unpack(data)
        assert h2.metadata == metadata and peek_header(data) == h2 and alpha == b"alpha"
        assert (h2.layered, h2.upscale_choice) == (h.layered, h.upscale_choice)


def test_files_without_metadata_keep_their_version_and_bytes():
    for kw, version in [({}, FORMAT_VERSION), (dict(layer_crcs=(1, 2)), C.LAYERED_FORMAT_VERSION),
                        (dict(upscale_choice=True), UPSCALE_FORMAT_VERSION)]:
        h = _header(**kw)
        tiles = _tiles(h, random.Random(5))
        data = pack(h, tiles)
        assert data[4] == version and not data[6] & 0x20
        assert pack(_header(metadata={"icc_profile": b"", "xmp": None}, **kw), tiles) == data  # empty entries: none


def test_metadata_is_covered_by_the_header_crc():
    data = bytearray(pack(_header(metadata=_META), [[b"ab", b"c"]]))
    at = bytes(data).index(b"ICC profile")
    data[at] ^= 1
    _fmt_error(bytes(data), "header CRC mismatch")


def _with_metadata_block(block: bytes, flags=COLOUR_RGB | 0x20, version=C.METADATA_FORMAT_VERSION) -> bytes:
    return _raw(format_version=version, flags=flags, metadata=block)


@pytest.mark.parametrize("block, match", [
    (b"", "block is empty"),
    (b"\x04\x01a", "kind 4"),  # unknown kind
    (b"\x02\x01a\x01\x01b", "kind 1"),  # out of order
    (b"\x01\x01a\x01\x01b", "kind 1"),  # twice
    (b"\x01\x00", "entry of 0 bytes"),
    (b"\x01\x05ab", "entry of 5 bytes"),
])
def test_malformed_metadata_blocks(block, match):
    _fmt_error(_with_metadata_block(block), match)


def test_metadata_flag_and_version_must_agree():
    _fmt_error(_with_metadata_block(b"\x01\x01a", version=UPSCALE_FORMAT_VERSION), "reserved flag bits")
    _fmt_error(_raw(format_version=C.METADATA_FORMAT_VERSION), "without the metadata flag")
    _fmt_error(_with_metadata_block(b"\x01\x01a", flags=COLOUR_RGB | 0x20 | 0x40), "reserved flag bits")


def test_huge_declared_metadata_fails_without_allocating():
    too_big = _raw(format_version=C.METADATA_FORMAT_VERSION, flags=COLOUR_RGB | 0x20)  # rewrite its length below
    for size in (C.MAX_METADATA_BYTES + 1, C.MAX_METADATA_BYTES, 2**35 - 1):
        head = too_big[:too_big.index(b"m") + 1 + 8 + 8 + 2 + 1 + 4 + 4]  # through payload_crc
        data = head + C.encode_varint(size) + bytes(100)
        tracemalloc.start()
        try:
            _fmt_error(data)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 2**20, f"peak {peak} bytes"


def test_pack_rejects_bad_metadata():
    with pytest.raises(ValueError, match="unknown metadata"):
        pack(_header(metadata={"comment": b"x"}), [[b"a", b"b"]])
    with pytest.raises(TypeError):
        pack(_header(metadata={"xmp": "<x/>"}), [[b"a", b"b"]])
    with pytest.raises(ValueError, match="at most"):
        pack(_header(metadata={"xmp": bytes(C.MAX_METADATA_BYTES)}), [[b"a", b"b"]])


def test_round_trip_empty_and_large_streams():
    h = _header(tile_h=50, tile_w=65, n_streams=2)
    tiles = [[b"", b""], [b"", b"x"], [b"\x00" * 300, b""], [b"", b"y" * 20000]]
    h2, tiles2, alpha = unpack(pack(h, tiles))
    assert (h2, tiles2, alpha) == (h, tiles, None)


def test_accepts_bytearray_and_memoryview():
    data = _small_files()[1]
    ref = unpack(data)
    assert unpack(bytearray(data)) == ref
    assert unpack(memoryview(data)) == ref


def test_tile_grid():
    assert tile_grid(100, 130, 0, 0) == [(0, 0, 100, 130)]
    g = tile_grid(100, 130, 64, 64)
    assert g == [(0, 0, 64, 64), (0, 64, 64, 64), (0, 128, 64, 2),
                 (64, 0, 36, 64), (64, 64, 36, 64), (64, 128, 36, 2)]
    assert _header(tile_h=64, tile_w=64).n_tiles == len(g)
    for h, w, th, tw in [(1, 1, 0, 0), (7, 9, 2, 4), (33, 17, 40, 3), (64, 64, 64, 64)]:
        cover = [[0] * w for _ in range(h)]
        for top, left, hh, ww in tile_grid(h, w, th, tw):
            for y in range(top, top + hh):
                for x in range(left, left + ww):
                    cover[y][x] += 1
        assert all(v == 1 for row in cover for v in row)
        assert len(tile_grid(h, w, th, tw)) == _header(height=h, width=w, tile_h=th, tile_w=tw).n_tiles


# --------------------------------------------------------------------------- size


def test_header_overhead_matches_docs():
    doc = (ROOT / "docs" / "format.md").read_text(encoding="utf-8")
    m = re.search(r"fixed header overhead[^\n]*?\*\*(\d+) bytes\*\*", doc, re.IGNORECASE)
    assert m, "docs/format.md must state the fixed header overhead as **N bytes**"
    assert int(m.group(1)) == FIXED_HEADER_BYTES == 39
    for name in ["", "sv-base", "x" * MAX_NAME_BYTES]:
        for lens in [[0], [5, 127], [1, 2, 3]]:
            h = _header(model_name=name, n_streams=len(lens))
            data = pack(h, [[b"s" * n for n in lens]])
            overhead = len(data) - sum(lens)
            assert overhead == FIXED_HEADER_BYTES + len(name.encode()) + len(lens)  # one varint byte per stream
            assert C.header_size(data) == overhead
    # alpha adds its bytes plus a varint
    h = _header(model_name="", n_streams=1)
    assert len(pack(h, [[b""]], alpha=b"a" * 10)) == FIXED_HEADER_BYTES + 1 + 1 + 10


def test_no_torch_import():
    tree = ast.parse(Path(C.__file__).read_text(encoding="utf-8"))
    mods = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    mods |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not any(m.split(".")[0] in {"torch", "numpy"} for m in mods)


# --------------------------------------------------------------------------- specific errors


def _fmt_error(data, match=None, **kw) -> str:
    with pytest.raises(FormatError, match=match) as ei:
        unpack(data, **kw)
    msg = str(ei.value)
    assert msg and "\n" not in msg
    return msg


def test_wrong_magic():
    assert _fmt_error(b"PNG\x89rest of file") == "not a .svae file"
    assert _fmt_error(b"") == "not a .svae file"
    assert _fmt_error(b"SVA") == "not a .svae file"
    with pytest.raises(FormatError, match="not a .svae file"):
        peek_header(b"\x89PNG\r\n\x1a\n")


def test_unknown_format_version():
    data = bytearray(_small_files()[0])
    data[4] = C.SEAMLESS_FORMAT_VERSION + 1
    msg = _fmt_error(bytes(data))
    assert f"version {C.SEAMLESS_FORMAT_VERSION + 1}" in msg and f"reads version {FORMAT_VERSION}" in msg
    with pytest.raises(FormatError, match=f"version {C.SEAMLESS_FORMAT_VERSION + 1}"):
        peek_header(bytes(data))


def test_a_retired_seamless_version_is_refused_by_name():
    """Version 6 coded each tile under its own priors; this build decodes only version 7's tiles."""
    data = bytearray(_small_files()[0])
    data[4] = 6
    with pytest.raises(FormatError, match="version 6 .* no longer read: encode the source image again"):
        peek_header(bytes(data))


def test_coder_version_checked_by_unpack_not_peek():
    data = _raw(coder_version=CODER_VERSION + 1)
    msg = _fmt_error(data)
    assert f"version {CODER_VERSION + 1}" in msg and f"reads versions {FLOAT_CODER_VERSION} and {CODER_VERSION}" in msg
    assert peek_header(data).coder_version == CODER_VERSION + 1
    assert unpack(data, check_coder_version=False)[0].coder_version == CODER_VERSION + 1


def test_trailing_garbage():
    for data in _small_files():
        _fmt_error(data + b"\x00", "trailing garbage")
        _fmt_error(data + data, "trailing garbage")


def test_header_crc_and_payload_crc():
    data = _small_files()[0]
    end = C.header_size(data)
    bad = bytearray(data)
    bad[12] ^= 0x10  # inside the model name: only the header CRC can notice
    _fmt_error(bytes(bad), "header CRC")
    bad = bytearray(data)
    bad[end + 3] ^= 0x01  # inside a stream
    _fmt_error(bytes(bad), "payload CRC")
    bad = bytearray(data)
    bad[end - 1] ^= 0x01  # the header CRC itself
    _fmt_error(bytes(bad), "header CRC")


def test_peek_header_needs_only_header():
    data = _small_files()[1]
    end = C.header_size(data)
    assert peek_header(data[:end]) == unpack(data)[0]
    with pytest.raises(FormatError):
        peek_header(data[: end - 1])


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(flags=COLOUR_RGB | 0x08), "reserved flag"),
        (dict(flags=COLOUR_RGB | 0x10), "reserved flag"),  # the upscale choice needs version 3
        (dict(format_version=UPSCALE_FORMAT_VERSION), "without the upscale-choice flag"),
        (dict(format_version=UPSCALE_FORMAT_VERSION, flags=COLOUR_RGB | 0x30), "reserved flag"),
        (dict(flags=3), "colour"),
        (dict(height=0), "empty image"),
        (dict(width=0), "empty image"),
        (dict(n_streams=0, lengths=[]), "zero streams"),
        (dict(name=b"\xff\xfe"), "UTF-8"),
        (dict(name=b"x" * (MAX_NAME_BYTES + 1)), "name length"),
        (dict(tile_h=65536), "tile size"),
        (dict(lengths=[4]), "truncated"),
        (dict(lengths=[2]), "trailing garbage"),
        (dict(lengths=[3, 0]), "header CRC"),  # more lengths than the grid: shifts the CRC
        (dict(payload_crc=0), "payload CRC"),
        (dict(flags=COLOUR_RGB | 4, alpha_len=1), "truncated"),
        (dict(flags=COLOUR_RGB | 4, alpha_len=None), None),
    ],
)
def test_semantic_errors(kw, match):
    _fmt_error(_raw(**kw), match)


def test_non_canonical_and_overlong_varints():
    good = _raw()
    i = C.header_size(good) - 5  # the single stream length varint (value 3)
    assert good[i] == 3
    for repl in [b"\x83\x00", b"\x83\x80\x80\x80\x80\x00", b"\xff" * 5 + b"\x01"]:
        body = good[:i] + repl
        data = body + struct.pack("<I", zlib.crc32(body)) + b"abc"
        _fmt_error(data)


# --------------------------------------------------------------------------- hostile sizes


@pytest.mark.parametrize(
    "kw",
    [
        dict(height=65535, width=65535),  # > MAX_PIXELS
        dict(height=16384, width=16384, tile_h=1, tile_w=1),  # 2**28 tiles > MAX_TILES
        dict(height=16384, width=16384, tile_h=64, tile_w=64, n_streams=255, lengths=[1] * 10),  # 16.7M lengths
        dict(lengths=[2**35 - 1]),  # stream longer than the file
        dict(n_streams=2, lengths=[2**34, 2**34]),
        dict(flags=COLOUR_RGB | 4, alpha_len=2**35 - 1),
        dict(height=65535, width=2, tile_h=1, tile_w=1),  # 131070 tiles
    ],
)
def test_huge_declared_sizes_fail_fast_without_allocating(kw):
    data = _raw(**kw)
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(FormatError):
            unpack(data)
        with pytest.raises(FormatError):
            unpack(data + bytes(100))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - t0 < 0.5
    assert peak < 2 * 2**20, f"peak {peak} bytes"


def test_pack_rejects_bad_arguments():
    h = _header()
    ok = [[b"a", b"b"]]
    pack(h, ok)
    with pytest.raises(ValueError):
        pack(h, ok * 2)  # wrong tile count
    with pytest.raises(ValueError):
        pack(h, [[b"a"]])  # wrong stream count
    for bad in [
        dict(model_name="x" * 65),
        dict(model_hash=b"short"),
        dict(height=0),
        dict(width=70000),
        dict(height=65535, width=65535),
        dict(colour=3),
        dict(mode=256),
        dict(pad_h=-1),
        dict(n_streams=0),
        dict(pixel_crc=2**32),
        dict(format_version=FORMAT_VERSION + 1),
        dict(height=4096, width=4096, tile_h=8, tile_w=8),  # 262144 tiles
    ]:
        with pytest.raises((ValueError, TypeError)):
            pack(_header(**bad), ok)


# --------------------------------------------------------------------------- damage


def test_truncation_at_every_offset():
    for data in _small_files():
        for n in range(len(data)):
            with pytest.raises(FormatError):
                unpack(data[:n])


def test_every_single_bit_flip_is_detected():
    data = _small_files()[0]
    for i in range(len(data)):
        for b in range(8):
            bad = bytearray(data)
            bad[i] ^= 1 << b
            with pytest.raises(FormatError):
                unpack(bytes(bad))


def _check_only_format_error(data: bytes) -> str:
    try:
        unpack(data)
    except FormatError as e:
        assert str(e) and "\n" not in str(e)
        return "error"
    return "parsed"


def test_random_mutations():
    rng = random.Random(1234)
    files = _small_files()
    outcomes = {"error": 0, "parsed": 0}
    for _ in range(3000):
        buf = bytearray(rng.choice(files))
        for _ in range(rng.randint(1, 3)):
            op = rng.randrange(4)
            i = rng.randrange(len(buf) + 1)
            if op == 0 and i < len(buf):
                buf[i] ^= 1 << rng.randrange(8)
            elif op == 1 and i < len(buf):
                buf[i] = rng.randrange(256)
            elif op == 2:
                buf[i:i] = rng.randbytes(rng.randint(1, 4))
            elif op == 3:
                del buf[i : i + rng.randint(1, 4)]
        outcomes[_check_only_format_error(bytes(buf))] += 1
    assert outcomes["error"] > 2900


def test_structured_fuzzer():
    fz = _load_fuzzer()
    corpus = fz.make_corpus(random.Random(5), 8)
    for f in corpus:
        unpack(f)
    counts, failures = fz.fuzz(unpack, corpus, 3000, seed=7, verbose=False)
    assert not failures, failures[0][1]
    assert counts["FormatError"] > 2000 and counts["parsed"] > 0  # CRC-fixed edits reach deep checks


def test_random_garbage():
    rng = random.Random(99)
    for i in range(2000):
        data = rng.randbytes(rng.randrange(80))
        if i % 2:
            data = b"SVAE" + bytes([FORMAT_VERSION]) + data
        assert _check_only_format_error(data) == "error"


def test_file_magic_in_the_docs_identifies_svae_files(tmp_path):
    import shutil
    import subprocess

    if shutil.which("file") is None:
        pytest.skip("file(1) is not installed")
    doc = (ROOT / "docs" / "format.md").read_text(encoding="utf-8")
    magic = re.search(r"```magic\n(.*?)```", doc, re.S).group(1)
    (tmp_path / "svae.magic").write_text(magic)
    (tmp_path / "x.svae").write_bytes(pack(_header(metadata=_META), [[b"ab", b"c"]]))
    out = subprocess.run(["file", "-m", str(tmp_path / "svae.magic"), str(tmp_path / "x.svae")],
                         capture_output=True, text=True, check=True).stdout
    assert "selfcodec .svae image, format version 4, 130x100, RGB, with metadata" in out
