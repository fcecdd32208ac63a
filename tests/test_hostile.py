"""Hostile input: truncated, mutated, forged and random files never make the decoder raise
anything but a CodecError, never return pixels the encoder did not predict, never allocate
or compute much for a short file; the CLI reports them in one line with exit code 4."""

from __future__ import annotations

import io
import os
import random
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

from benchmarks.fuzz_container import _fix_crcs, _layout, mutate
from selfcodec import api
from selfcodec.model import exact as X
from selfcodec.codec import container as C
from selfcodec.codec import modes as M
from selfcodec.errors import CodecError, FormatError

ROOT = Path(__file__).resolve().parents[1]
MODES = ["rec1", "rec2", "cgen", "crec", "lossless"]


@pytest.fixture(scope="module")
def valid(tiny_model, natural):
    """Small valid files: every mode on a 16x16 crop, plus an RGBA and a two-tile file."""
    img = np.ascontiguousarray(natural[:16, :16])
    out = {m: api.encode(img, m, 3, model=tiny_model) for m in MODES}
    alpha = np.dstack([img, np.arange(256, dtype=np.uint8).reshape(16, 16)])
    out["rgba-rec1"] = api.encode(alpha, "rec1", 3, model=tiny_model)
    out["tiled-rec2"] = api.encode(np.ascontiguousarray(natural[:16, :24]), "rec2", 3, model=tiny_model, tile=16)
    return out


def _what_decodes(data: bytes):
    """The header fields and payload that determine a lossy file's pixels (not its CRCs)."""
    h = C.peek_header(data)
    return (h.model_hash, h.mode, h.level, h.height, h.width, h.tile_h, h.tile_w, h.pad_h, h.pad_w,
            data[C.header_size(data):])


def _decode_checked(data: bytes, model: str, valid: dict | None = None):
    """Decode; if pixels come back, they must be the ones the header's pixel CRC names, or for a
    lossy file with exact tables (whose CRC guards the coded integers) those of the valid file it
    was made from, where its header fields and payload are that file's."""
    try:
        rgb, meta = api.decode_rgb(data, model=model)
    except CodecError as e:
        msg = str(e)
        assert msg and "\n" not in msg, repr(msg)
        return type(e).__name__
    hdr = C.peek_header(data)
    if hdr.coder_version == C.CODER_VERSION and hdr.mode != M.MODE_CODES["lossless"]:
        same = [v for v in (valid or {}).values() if _what_decodes(v) == _what_decodes(data)]
        for v in same:
            assert np.array_equal(rgb, api.decode_rgb(v, model=model)[0])
    else:
        assert zlib.crc32(np.ascontiguousarray(rgb).tobytes()) == hdr.pixel_crc
    assert rgb.shape == (hdr.height, hdr.width, 3)
    return "decoded"


def test_valid_files_decode(valid, tiny_model):
    for name, data in valid.items():
        assert _decode_checked(data, tiny_model) == "decoded", name


def test_truncation_at_every_offset(valid, tiny_model):
    for name, data in valid.items():
        for n in range(len(data)):
            with pytest.raises(FormatError):
                api.decode(data[:n], model=tiny_model)


def test_random_mutations(valid, tiny_model):
    rng = random.Random(20240601)
    corpus = list(valid.values())
    outcomes = {}
    for i in range(300):
        case = mutate(rng.choice(corpus), rng, corpus)
        r = _decode_checked(case, tiny_model, valid)
        outcomes[r] = outcomes.get(r, 0) + 1
    assert outcomes.get("FormatError", 0) > 100, outcomes


def test_crc_fixed_payload_edits_reach_the_entropy_decoder(valid, tiny_model):
    """Payload bytes changed and both CRCs recomputed: only the entropy decoders and the
    pixel CRC stand between the bytes and the user."""
    rng = random.Random(7)
    seen = {}
    for name, data in valid.items():
        end, pcrc = _layout(data)
        for _ in range(12):
            buf = bytearray(data)
            for _ in range(rng.randint(1, 3)):
                i = rng.randrange(end + 4, len(buf))
                buf[i] = rng.choice([0, 0xFF, rng.randrange(256), buf[i] ^ (1 << rng.randrange(8))])
            _fix_crcs(buf, end, pcrc)
            r = _decode_checked(bytes(buf), tiny_model, valid)
            seen[r] = seen.get(r, 0) + 1
    assert set(seen) - {"decoded"}, seen  # the stream / pixel checks do fire


def test_crc_fixed_header_edits(valid, tiny_model):
    rng = random.Random(11)
    for name, data in valid.items():
        end, pcrc = _layout(data)
        for i in range(4, end):
            if pcrc <= i < pcrc + 4:
                continue
            buf = bytearray(data)
            buf[i] = rng.choice([0, 0xFF, buf[i] ^ (1 << rng.randrange(8))])
            _fix_crcs(buf, end, pcrc)
            t0 = time.perf_counter()
            _decode_checked(bytes(buf), tiny_model, valid)
            assert time.perf_counter() - t0 < 10, (name, i)


def test_random_garbage(tiny_model):
    rng = random.Random(3)
    for n in list(range(0, 64)) + [100, 1000, 10000]:
        with pytest.raises(FormatError):
            api.decode(rng.randbytes(n), model=tiny_model)
        with pytest.raises(FormatError):
            api.decode(b"SVAE" + rng.randbytes(n), model=tiny_model)
    with pytest.raises(FormatError):
        api.decode(b"", model=tiny_model)
    with pytest.raises(CodecError):
        api.info(b"SVAE\x01")


def _forge(data: bytes, **fields) -> bytes:
    """A copy of a valid file with header fields replaced (CRCs valid)."""
    h, tiles, alpha = C.unpack(data)
    streams = [t[i] for i in range(h.n_streams) for t in tiles] if h.layered else [s for t in tiles for s in t]
    payload = (alpha or b"") + b"".join(streams) if h.layered else b"".join(streams) + (alpha or b"")
    raw = dict(format_version=h.format_version, coder_version=h.coder_version, layer_crcs=list(h.layer_crcs),
               flags=h.colour | (4 if alpha is not None else 0) | (8 if h.layered else 0) | (16 if h.upscale_choice else 0),
               name=h.model_name.encode(),
               model_hash=h.model_hash, mode=h.mode, level=h.level, height=h.height, width=h.width,
               pad_h=h.pad_h, pad_w=h.pad_w, tile_h=h.tile_h, tile_w=h.tile_w, n_streams=h.n_streams,
               pixel_crc=h.pixel_crc, alpha_len=len(alpha) if alpha is not None else None,
               lengths=[len(s) for s in streams], payload=payload)
    raw.update(fields)
    return C._pack_raw(**raw)


def test_older_coder_version_only_for_latent_only_modes(valid, tiny_model, natural):
    """Coder version 3 changed only pixel coding: a version-2 rec1/rec2 file (float tables, as
    version 3 has) decodes as before; a version-2 file with pixel streams, or any other version,
    is refused by name."""
    img = np.ascontiguousarray(natural[:16, :16])
    for mode in ("rec1", "rec2"):
        with mock.patch.object(X, "supports", lambda model: False):
            float_file = api.encode(img, mode, 3, model=tiny_model)
        assert C.peek_header(float_file).coder_version == C.FLOAT_CODER_VERSION
        old = api.decode(_forge(float_file, coder_version=2), model=tiny_model, as_array=True)
        assert np.array_equal(old, api.decode(float_file, model=tiny_model, as_array=True))
    for mode, version in (("lossless", 2), ("crec", 2), ("rec2", 1), ("rec2", C.CODER_VERSION + 1)):
        with pytest.raises(FormatError, match=f"entropy-coder version {version}; this build reads versions"):
            api.decode(_forge(valid[mode], coder_version=version), model=tiny_model)


def test_huge_declared_sizes_fail_fast(valid, tiny_model):
    data = valid["rec1"]
    h, tiles, _ = C.unpack(data)
    streams = tiles[0]
    one = [len(s) for s in streams]
    payload = b"".join(streams)
    cases = [
        # huge image, one tile: the tile limit stops it before any model call
        _forge(data, height=16384, width=16384),
        _forge(data, height=65535, width=4096),
        # huge image, many tiles, but the stream table only lists one tile's streams
        _forge(data, height=16384, width=16384, tile_h=16, tile_w=16),
        # consistent table of many tiles, lengths that run far past the end
        _forge(data, height=4096, width=4096, tile_h=1024, tile_w=1024, lengths=[2**34] * (16 * len(one)),
               payload=payload),
        # stream lengths and alpha length at the varint limit
        _forge(data, lengths=[2**35 - 1] * len(one)),
        _forge(data, flags=4, alpha_len=2**35 - 1),
        # too many pixels / tiles / zero size / unknown mode, level, colour
        _forge(data, height=65535, width=65535),
        _forge(data, height=65535, width=65535, tile_h=1, tile_w=1),
        _forge(data, height=0),
        _forge(data, mode=0),
        _forge(data, mode=200),
        _forge(data, level=9),
        _forge(data, flags=3),
        _forge(data, n_streams=0, lengths=[]),
        _forge(data, n_streams=255, lengths=one * 85),
    ]
    for i, case in enumerate(cases):
        t0 = time.perf_counter()
        with pytest.raises(FormatError):
            api.decode(case, model=tiny_model)
        assert time.perf_counter() - t0 < 0.5, i


def test_wrong_stream_count_or_mode_for_model(valid, tiny_model):
    data = valid["crec"]
    h, tiles, _ = C.unpack(data)
    s = tiles[0]
    assert len(s) == 2  # the latents (u+z), then y
    # the right number of streams for another mode (latents only, as rec2) under the crec mode code
    with pytest.raises(FormatError):
        api.decode(_forge(data, n_streams=1, lengths=[len(s[0])], payload=s[0]), model=tiny_model)
    # a mode this model cannot do (cgen-y1 needs two levels)
    with pytest.raises(CodecError):
        api.decode(_forge(data, mode=M.MODE_CODES["cgen-y1"]), model=tiny_model)
    # a stream moved from one slot to another
    with pytest.raises(CodecError):
        api.decode(_forge(data, lengths=[len(s[1]), len(s[0])], payload=s[1] + s[0]), model=tiny_model)


# --------------------------------------------------------------------------- the command line


def _cli_env():
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def test_cli_corrupt_file(valid, tiny_model, tmp_path):
    data = bytearray(valid["crec"])
    end, pcrc = _layout(bytes(data))
    data[end + 10] ^= 0x40  # payload CRC now wrong
    bad = tmp_path / "bad.svae"
    bad.write_bytes(bytes(data))
    out = tmp_path / "out.png"
    res = subprocess.run([sys.executable, "-m", "selfcodec", "decode", str(bad), "-o", str(out), "--model", tiny_model],
                         cwd=ROOT, env=_cli_env(), capture_output=True, text=True, timeout=120)
    assert res.returncode == 4, (res.returncode, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("selfcodec: error: "), res.stderr
    assert "Traceback" not in res.stderr and "CRC" in lines[0]
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.svae"]  # no temporary file left either


def test_cli_runner_truncated_and_garbage(valid, tiny_model, tmp_path):
    from click.testing import CliRunner

    import selfcodec.cli.main as cli_main

    cli = cli_main
    runner = CliRunner()
    for name, content in [("trunc.svae", valid["lossless"][:-7]), ("junk.svae", os.urandom(300)),
                          ("empty.svae", b"")]:
        src = tmp_path / name
        src.write_bytes(content)
        out = tmp_path / (name + ".png")
        res = runner.invoke(cli.main, ["decode", str(src), "-o", str(out), "--model", tiny_model])
        assert res.exit_code == 4, (name, res.exit_code, res.output, res.exception)
        text = (res.stderr if hasattr(res, "stderr") and res.stderr_bytes is not None else res.output).strip()
        assert text.startswith("selfcodec: error: ") and len(text.splitlines()) == 1, text
        assert "Traceback" not in text
        assert not out.exists()


# --------------------------------------------------------------------------- values a valid file cannot hold


def _with_choice_2(crec_of: np.ndarray, tiny_model: str) -> bytes:
    """A crec file whose upscale choice is the symbol 2 (CRCs right: the encoder coded it)."""
    walk = M._encode_walk

    def coding_2(model, x, plan, level, how, searched, exact, choices, valid=None, need_x=True):
        return walk(model, x, plan, level, how, searched, exact, None if choices is None else [2], valid, need_x)

    with mock.patch.object(M, "_encode_walk", coding_2):
        return api.encode(crec_of, "crec", 3, model=tiny_model)


def _corrupt_cases(valid: dict, natural: np.ndarray, tiny_model: str) -> dict:
    lossless = valid["lossless"]
    h, tiles, _ = C.unpack(lossless)
    return {"mode 6 (cgen-y1) on a 2-level model": _forge(valid["crec"], mode=M.MODE_CODES["cgen-y1"]),
            "mode 7 (crec-y1) on a 2-level model": _forge(valid["crec"], mode=M.MODE_CODES["crec-y1"]),
            "5 layers": _forge(lossless, n_streams=5, layer_crcs=list(h.layer_crcs) + [0],
                               lengths=[len(s) for s in tiles[0]] + [0]),
            "upscale choice 2": _with_choice_2(np.ascontiguousarray(natural[:16, :16]), tiny_model)}


def test_values_out_of_range_are_format_errors(valid, natural, tiny_model):
    for what, data in _corrupt_cases(valid, natural, tiny_model).items():
        with pytest.raises(FormatError, match="corrupt"):
            api.decode(data, model=tiny_model)


def test_values_out_of_range_exit_4_on_the_command_line(valid, natural, tiny_model, tmp_path):
    from click.testing import CliRunner

    import selfcodec.cli.main as cli_main

    for what, data in _corrupt_cases(valid, natural, tiny_model).items():
        src = tmp_path / "bad.svae"
        src.write_bytes(data)
        res = CliRunner().invoke(cli_main.main, ["decode", str(src), "-o", str(tmp_path / "x.png"), "--force",
                                                   "--model", tiny_model])
        assert res.exit_code == 4, (what, res.exit_code, res.output)


def test_rgba_without_alpha_is_a_format_error_in_the_api_and_pillow(valid, tiny_model, pillow_plugin):
    from PIL import Image

    for data in (_forge(valid["rec1"], flags=C.COLOUR_RGBA), _forge(valid["rgba-rec1"], flags=C.COLOUR_RGB | 4)):
        with pytest.raises(FormatError, match="alpha"):
            api.decode(data, model=tiny_model)
        with pytest.raises(FormatError, match="alpha"):
            Image.open(io.BytesIO(data))
