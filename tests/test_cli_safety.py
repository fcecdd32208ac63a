"""Safety of the command line (overwrites, atomic writes, errors, exit codes, batches).

The codec is replaced by a small fake ``selfcodec.api`` (zlib of the pixels behind a
tiny header) so that these tests check the CLI alone; the real codec is tested elsewhere.
"""

from __future__ import annotations

import io
import json
import os
import struct
import sys
import types
import zlib

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import selfcodec
import selfcodec.cli.main as cli_main
from selfcodec.errors import ChecksumError, FormatError, ModelMismatchError

cli = cli_main
MAGIC = b"FAKESVAE"


def _fake_api() -> types.ModuleType:
    from selfcodec.imageio import load_image, to_pil, ImageMeta

    api = types.ModuleType("selfcodec.api")
    api.MODES = ["rec1", "rec2", "cgen", "crec", "lossless"]
    api.LEVELS = [1, 2, 3, 4, 5]
    api.calls = []

    def encode(image, mode="rec2", level=3, model=None, verify=False, search=0):
        api.calls.append(("encode", mode, level, model, verify))
        rgb, meta = load_image(image)
        h, w, _ = rgb.shape
        body = zlib.compress(rgb.tobytes())
        return MAGIC + struct.pack(">IIB", w, h, b"L RGBA".index(meta.colour[0].encode())) + body

    def _parse(data):
        if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 9:
            raise FormatError("not a .svae file (bad magic)")
        w, h, c = struct.unpack(">IIB", data[len(MAGIC):len(MAGIC) + 9])
        return w, h, c, data[len(MAGIC) + 9:]

    def decode(data, model=None):
        api.calls.append(("decode", model))
        w, h, c, body = _parse(data)
        if model == "other":
            raise ModelMismatchError("file was written with model 'base', not 'other'")
        try:
            rgb = np.frombuffer(zlib.decompress(body), np.uint8).reshape(h, w, 3)
        except (zlib.error, ValueError):
            raise FormatError("truncated .svae file") from None
        return to_pil(rgb, ImageMeta("L" if c == 0 else "RGB"))

    def info(data):
        w, h, c, body = _parse(data)
        return {"model": "fake", "mode": "rec2", "level": 3, "width": w, "height": h,
                "colour": "L" if c == 0 else "RGB", "bytes": len(data), "bpp": len(data) * 8 / (w * h),
                "streams": {"pixels": len(body), "header": 9 + len(MAGIC)}, "checksums": {"crc": b"\x01\x02"}}

    api.encode, api.decode, api.info = encode, decode, info
    return api


@pytest.fixture
def api(monkeypatch):
    fake = _fake_api()
    monkeypatch.setitem(sys.modules, "selfcodec.api", fake)
    monkeypatch.setitem(sys.modules, "selfcodec.codec.fileinfo", types.SimpleNamespace(info=fake.info))
    monkeypatch.setattr(selfcodec, "api", fake, raising=False)
    monkeypatch.delenv("SELFCODEC_DEBUG", raising=False)
    return fake


@pytest.fixture
def runner():
    try:
        return CliRunner(mix_stderr=False)
    except TypeError:  # click >= 8.2 keeps stderr apart by itself
        return CliRunner()


def run(runner, *args, input=None):
    return runner.invoke(cli.main, [str(a) for a in args], input=input, catch_exceptions=False)


def _img(path, seed=0, size=(6, 5)):
    a = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(a).save(path)
    return a


def _files(d):
    return sorted(p.name for p in d.iterdir())


def _assert_one_line_error(res, code, *words):
    assert res.exit_code == code, (res.exit_code, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("selfcodec: error: "), res.stderr
    assert "Traceback" not in res.stderr
    for w in words:
        assert w in lines[0]


# ------------------------------------------------------------------ basics


def test_help_and_version(runner):
    assert run(runner, "--help").exit_code == 0
    res = run(runner, "--version")
    assert res.exit_code == 0 and selfcodec.__version__ in res.stdout


def test_encode_decode_default_paths(api, runner, tmp_path):
    a = _img(tmp_path / "x.png")
    res = run(runner, "encode", tmp_path / "x.png", "-m", "rec1", "-l", "2", "--model", "m", "--verify")
    assert res.exit_code == 0, res.stderr
    assert api.calls[-1] == ("encode", "rec1", 2, "m", True)
    assert (tmp_path / "x.svae").read_bytes().startswith(MAGIC)
    assert "bytes" in res.stderr and "bpp" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    (tmp_path / "x.png").rename(tmp_path / "orig.png")
    res = run(runner, "decode", tmp_path / "x.svae")
    assert res.exit_code == 0, res.stderr
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "x.png")), a)
    assert _files(tmp_path) == ["orig.png", "x.png", "x.svae"]


def test_bad_mode_and_level_are_usage_errors(api, runner, tmp_path):
    _img(tmp_path / "x.png")
    assert run(runner, "encode", tmp_path / "x.png", "-m", "nope").exit_code == 2
    assert run(runner, "encode", tmp_path / "x.png", "-m", "rec2", "-l", "9").exit_code == 2
    assert run(runner, "encode", tmp_path / "x.png", "-m", "rec2", "-q", "101").exit_code == 2
    assert _files(tmp_path) == ["x.png"]


def test_q_is_the_0_100_quality_as_in_cwebp_and_l_the_level(api, runner, tmp_path, monkeypatch):
    """-q is --quality (cwebp's, cjxl's, avifenc's habit), also in batch mode; the level is -l/--level."""
    _img(tmp_path / "x.png")
    _img(tmp_path / "y.png", seed=1)
    qualities, fake_encode = [], api.encode

    def encode(image, quality=None, **kw):
        qualities.append(quality)
        return fake_encode(image, **kw)

    monkeypatch.setattr(api, "encode", encode)
    for opts in (["-q", "5"], ["--quality", "5"]):
        res = run(runner, "encode", tmp_path / "x.png", *opts, "-o", tmp_path / "q.svae", "-f")
        assert res.exit_code == 0, res.stderr
        assert qualities[-1] == 5 and api.calls[-1][2] == 3  # the quality, not level 5 (3: the fake's default)
    res = run(runner, "encode", tmp_path / "x.png", tmp_path / "y.png", "-q", "80", "-o", tmp_path / "out")
    assert res.exit_code == 0, res.stderr
    assert qualities[-2:] == [80, 80] and _files(tmp_path / "out") == ["x.svae", "y.svae"]
    for opts in (["-l", "5"], ["--level", "5.5"]):
        res = run(runner, "encode", tmp_path / "x.png", *opts, "-o", tmp_path / "l.svae", "-f")
        assert res.exit_code == 0, res.stderr
        assert qualities[-1] is None and api.calls[-1][2] == float(opts[1])
    res = run(runner, "encode", tmp_path / "x.png", "-l", "80")
    assert res.exit_code == 2 and "-q 80" in res.stderr  # a level out of range that is a quality: pointed to -q
    assert run(runner, "encode", tmp_path / "x.png", "-q", "50", "-l", "3").exit_code == 2
    help_text = run(runner, "encode", "--help").stdout
    assert "-q, --quality Q" in help_text and "-l, --level LEVEL" in help_text


def test_encode_mode_defaults_to_rec2(api, runner, tmp_path):
    _img(tmp_path / "x.png")
    res = run(runner, "encode", tmp_path / "x.png", "-o", tmp_path / "x.svae")
    assert res.exit_code == 0, res.stderr
    assert api.calls[-1] == ("encode", "rec2", 3, None, False)
    assert "(rec2, level 3)" in res.stderr


def test_info_text_and_json(api, runner, tmp_path):
    _img(tmp_path / "x.png")
    run(runner, "encode", tmp_path / "x.png", "-m", "rec2")
    res = run(runner, "info", tmp_path / "x.svae")
    assert res.exit_code == 0 and "width" in res.stdout and "pixels" in res.stdout
    res = run(runner, "info", tmp_path / "x.svae", "--json")
    d = json.loads(res.stdout)
    assert d["width"] == 6 and d["checksums"]["crc"] == "0102"


# ------------------------------------------------------------------ overwrites


def test_no_overwrite_without_force(api, runner, tmp_path):
    _img(tmp_path / "x.png")
    (tmp_path / "x.svae").write_bytes(b"precious")
    res = run(runner, "encode", tmp_path / "x.png", "-m", "rec2")
    _assert_one_line_error(res, 2, "exists", "--force")
    assert (tmp_path / "x.svae").read_bytes() == b"precious"
    assert api.calls == []  # refused before doing the work
    res = run(runner, "encode", tmp_path / "x.png", "-m", "rec2", "--force")
    assert res.exit_code == 0
    assert (tmp_path / "x.svae").read_bytes().startswith(MAGIC)


def test_decode_does_not_overwrite_existing_png(api, runner, tmp_path):
    _img(tmp_path / "x.png")
    run(runner, "encode", tmp_path / "x.png", "-m", "rec2")
    before = (tmp_path / "x.png").read_bytes()
    res = run(runner, "decode", tmp_path / "x.svae")
    _assert_one_line_error(res, 2, "exists")
    assert (tmp_path / "x.png").read_bytes() == before
    assert run(runner, "decode", tmp_path / "x.svae", "--force").exit_code == 0


@pytest.mark.parametrize("cmd", ["encode", "decode"])
def test_input_never_overwritten_even_with_force(api, runner, tmp_path, cmd):
    _img(tmp_path / "x.png")
    run(runner, "encode", tmp_path / "x.png", "-m", "rec2")
    src = tmp_path / ("x.png" if cmd == "encode" else "x.svae")
    before = src.read_bytes()
    extra = ["-m", "rec2"] if cmd == "encode" else []
    for out in (src, tmp_path / "sub" / ".." / src.name):
        (tmp_path / "sub").mkdir(exist_ok=True)
        res = run(runner, cmd, src, "-o", out, "--force", *extra)
        _assert_one_line_error(res, 2, "input")
        assert src.read_bytes() == before
    # a symlink to the input is the input too
    (tmp_path / "link.svae").symlink_to(src)
    res = run(runner, cmd, src, "-o", tmp_path / "link.svae", "--force", *extra)
    _assert_one_line_error(res, 2, "input")
    assert src.read_bytes() == before


def test_decode_default_output_equal_to_input_refused(api, runner, tmp_path):
    _img(tmp_path / "x.png")
    run(runner, "encode", tmp_path / "x.png", "-m", "rec2", "-o", tmp_path / "y.svae")
    (tmp_path / "y.svae").rename(tmp_path / "y.png")  # an .svae named .png: default output is itself
    before = (tmp_path / "y.png").read_bytes()
    _assert_one_line_error(run(runner, "decode", tmp_path / "y.png", "--force"), 2, "input")
    assert (tmp_path / "y.png").read_bytes() == before


# ------------------------------------------------------------------ atomic writes


def test_failing_encoder_leaves_nothing(api, runner, tmp_path):
    _img(tmp_path / "x.png")

    def boom(*a, **k):
        raise ChecksumError("verification failed: decoded image differs")

    api.encode = boom
    res = run(runner, "encode", tmp_path / "x.png", "-m", "rec2", "--verify")
    _assert_one_line_error(res, 6, "verification failed")
    assert _files(tmp_path) == ["x.png"]


@pytest.mark.parametrize("exc, code", [(OSError(28, "No space left on device"), 2), (KeyboardInterrupt(), 130)])
def test_failure_while_writing_removes_temp_file(api, runner, tmp_path, monkeypatch, exc, code):
    _img(tmp_path / "x.png")
    (tmp_path / "x.svae").write_bytes(b"old")

    def failing_fsync(fd):
        raise exc

    monkeypatch.setattr(os, "fsync", failing_fsync)
    res = run(runner, "encode", tmp_path / "x.png", "-m", "rec2", "--force")
    assert res.exit_code == code, res.stderr
    assert "Traceback" not in res.stderr
    assert _files(tmp_path) == ["x.png", "x.svae"]
    assert (tmp_path / "x.svae").read_bytes() == b"old"  # old content intact, no temp file


def test_output_permissions_follow_umask(api, runner, tmp_path):
    _img(tmp_path / "x.png")
    run(runner, "encode", tmp_path / "x.png", "-m", "rec2")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "x.svae").stat().st_mode & 0o777 == 0o666 & ~mask


# ------------------------------------------------------------------ errors


def test_corrupt_input_one_line_exit_4(api, runner, tmp_path):
    (tmp_path / "bad.svae").write_bytes(b"garbage")
    _assert_one_line_error(run(runner, "decode", tmp_path / "bad.svae"), 4, "not a .svae file")
    _assert_one_line_error(run(runner, "info", tmp_path / "bad.svae"), 4)
    assert _files(tmp_path) == ["bad.svae"]


def test_model_mismatch_exit_5(api, runner, tmp_path):
    _img(tmp_path / "x.png")
    run(runner, "encode", tmp_path / "x.png", "-m", "rec2", "-o", tmp_path / "x.svae")
    _assert_one_line_error(run(runner, "decode", tmp_path / "x.svae", "-o", tmp_path / "o.png", "--model", "other"), 5)


def test_unsupported_image_exit_3(api, runner, tmp_path):
    (tmp_path / "x.png").write_text("not an image")
    _assert_one_line_error(run(runner, "encode", tmp_path / "x.png", "-m", "rec2"), 3, "cannot read")
    assert _files(tmp_path) == ["x.png"]


def test_internal_error_is_one_line_unless_debug(api, runner, tmp_path, monkeypatch):
    _img(tmp_path / "x.png")

    def bug(*a, **k):
        raise ZeroDivisionError("oops")

    api.encode = bug
    _assert_one_line_error(run(runner, "encode", tmp_path / "x.png", "-m", "rec2"), 1, "internal error", "SELFCODEC_DEBUG")
    monkeypatch.setenv("SELFCODEC_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        run(runner, "encode", tmp_path / "x.png", "-m", "rec2")


def test_missing_input_is_usage_error(api, runner, tmp_path):
    assert run(runner, "decode", tmp_path / "nope.svae").exit_code == 2


def test_unknown_output_format_refused(api, runner, tmp_path):
    _img(tmp_path / "x.png")
    run(runner, "encode", tmp_path / "x.png", "-m", "rec2")
    for name in ("y.xyz", "y.svae", "y"):
        assert run(runner, "decode", tmp_path / "x.svae", "-o", tmp_path / name).exit_code == 2
    assert _files(tmp_path) == ["x.png", "x.svae"]


# ------------------------------------------------------------------ stdin / stdout


def test_stdin_stdout(api, runner, tmp_path):
    a = _img(tmp_path / "x.png")
    res = run(runner, "encode", "-", "-m", "rec2", input=(tmp_path / "x.png").read_bytes())
    assert res.exit_code == 0, res.stderr
    svae = res.stdout_bytes
    assert svae.startswith(MAGIC) and res.stderr == ""  # no summary when writing stdout
    res = run(runner, "decode", "-", "-o", "-", input=svae)
    assert res.exit_code == 0
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(res.stdout_bytes))), a)
    res = run(runner, "encode", tmp_path / "x.png", "-m", "rec2", "-o", "-")
    assert res.stdout_bytes == svae and res.stderr == ""
    res = run(runner, "info", "-", "--json", input=svae)
    assert json.loads(res.stdout)["height"] == 5
    assert _files(tmp_path) == ["x.png"]
    res = run(runner, "decode", "-", input=b"junk")
    _assert_one_line_error(res, 4)
    assert res.stdout_bytes == b""


# ------------------------------------------------------------------ batches


def test_batch_encode_then_decode_into_dir(api, runner, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    arrays = {f"im{i}": _img(src / f"im{i}.png", seed=i) for i in range(3)}
    (src / "readme.txt").write_text("ignored")
    res = run(runner, "encode", src, "-m", "rec2", "-o", tmp_path / "enc")
    assert res.exit_code == 0, res.stderr
    assert "3 ok, 0 failed" in res.stderr and "bpp" in res.stderr
    assert _files(tmp_path / "enc") == ["im0.svae", "im1.svae", "im2.svae"]
    res = run(runner, "decode", tmp_path / "enc", "-o", tmp_path / "dec")
    assert res.exit_code == 0 and "3 ok, 0 failed" in res.stderr
    for name, a in arrays.items():
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "dec" / f"{name}.png")), a)


def test_batch_one_bad_file(api, runner, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    _img(src / "a.png", seed=1)
    (src / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    _img(src / "c.jpg", seed=2)
    res = run(runner, "encode", src, "-m", "rec2")  # outputs beside the inputs
    assert res.exit_code == 3
    assert "2 ok, 1 failed" in res.stderr
    assert any(line.startswith("selfcodec: error: ") and "b.png" in line for line in res.stderr.splitlines())
    assert _files(src) == ["a.png", "a.svae", "b.png", "c.jpg", "c.svae"]
    # second run: outputs exist -> refused (exit 2) without --force, untouched
    before = (src / "a.svae").read_bytes()
    res = run(runner, "encode", src, "-m", "rec2")
    assert res.exit_code != 0 and "0 ok, 3 failed" in res.stderr
    assert (src / "a.svae").read_bytes() == before
    # corrupt .svae in a decode batch
    (src / "b.svae").write_bytes(b"nope")
    res = run(runner, "decode", src, "-o", tmp_path / "out")
    assert res.exit_code == 4 and "2 ok, 1 failed" in res.stderr
    assert _files(tmp_path / "out") == ["a.png", "c.png"]


def test_batch_name_collision_is_not_silently_overwritten(api, runner, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    _img(src / "a.png", seed=1)
    _img(src / "a.jpg", seed=2)
    res = run(runner, "encode", src, "-m", "rec2", "-o", tmp_path / "out", "--force")
    assert res.exit_code == 2 and "1 ok, 1 failed" in res.stderr
    assert _files(tmp_path / "out") == ["a.svae"]


def test_batch_empty_dir(api, runner, tmp_path):
    _assert_one_line_error(run(runner, "encode", tmp_path, "-m", "rec2"), 2, "no ")


def test_output_directory_for_one_file(api, runner, tmp_path):
    _img(tmp_path / "x.png")
    (tmp_path / "out").mkdir()
    assert run(runner, "encode", tmp_path / "x.png", "-m", "rec2", "-o", tmp_path / "out").exit_code == 0
    assert run(runner, "decode", tmp_path / "out" / "x.svae", "-o", tmp_path / "out").exit_code == 0
    assert _files(tmp_path / "out") == ["x.png", "x.svae"]
