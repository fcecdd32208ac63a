"""The command line as cwebp/cjxl users expect it: several inputs and globs, a line per file,
every image type Pillow reads (and a line for each file skipped), --quiet and -v, --threads,
--strip, --allow-lossy-convert, --max-pixels for encode, an extension check on -o, decoding to
any format Pillow writes, and options checked (and `info` answered) without torch.
Tiny random-init models code the images; nothing here reads ../shared."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from selfcodec import api
import selfcodec.cli.main as cli_main
from selfcodec.codec import container as C

ROOT = Path(__file__).resolve().parents[1]
cli = cli_main


def run(*args):
    try:
        runner = CliRunner(mix_stderr=False)
    except TypeError:  # click >= 8.2 keeps stderr apart by itself
        runner = CliRunner()
    return runner.invoke(cli.main, [str(a) for a in args], catch_exceptions=False)


def _save(path: Path, natural: np.ndarray, fmt: str | None = None, **opts) -> Path:
    Image.fromarray(np.ascontiguousarray(natural[:16, :16])).save(path, fmt, **opts)
    return path


def test_several_inputs_and_a_glob_with_a_line_per_file(tiny_model, natural, tmp_path):
    a, b = _save(tmp_path / "a.png", natural), _save(tmp_path / "b.gif", natural)
    res = run("encode", a, b, "-o", tmp_path / "out", "-m", "rec1", "--model", tiny_model)
    assert res.exit_code == 0, res.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.svae", "b.svae"]
    lines = res.stderr.strip().splitlines()
    for src in (a, b):
        line = next(ln for ln in lines if ln.startswith(f"{src} -> "))
        assert "bytes" in line and "bpp" in line and line.endswith(" s")
    assert lines[-1].startswith("encoded 2 ok, 0 failed, 0 skipped")
    res = run("encode", str(tmp_path / "*.png"), "-o", tmp_path / "globbed", "-m", "rec1", "--model", tiny_model)
    assert res.exit_code == 0 and [p.name for p in (tmp_path / "globbed").iterdir()] == ["a.svae"]
    assert run("encode", str(tmp_path / "*.jxl"), "--model", tiny_model).exit_code == 2  # matches nothing


def test_a_folder_takes_every_type_pillow_reads_and_says_what_it_skips(tiny_model, natural, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a.png", "b.gif", "c.webp", "d.avif", "e.tiff"):
        _save(photos / name, natural)
    (photos / "notes.txt").write_text("not an image")
    (photos / "old.svae").write_bytes(b"SVAE")
    res = run("encode", photos, "-o", tmp_path / "out", "-m", "rec1", "--model", tiny_model)
    assert res.exit_code == 0, res.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.svae", "b.svae", "c.svae", "d.svae", "e.svae"]
    assert f"skipped {photos / 'notes.txt'}: not an image file type Pillow reads (.txt)" in res.stderr
    assert f"skipped {photos / 'old.svae'}: already a .svae file" in res.stderr
    assert "encoded 5 ok, 0 failed, 2 skipped" in res.stderr


def test_quiet_and_verbose(tiny_model, natural, tmp_path):
    src = _save(tmp_path / "a.png", natural)
    res = run("encode", src, "-m", "rec1", "--model", tiny_model, "--quiet")
    assert res.exit_code == 0 and res.stderr == "" and res.stdout == ""
    res = run("encode", src, "-m", "rec1", "--model", tiny_model, "-v", "-f")
    assert res.exit_code == 0 and "streams (bytes): stream0 " in res.stderr and "model tiny-ds" in res.stderr


def test_threads(tiny_model, natural, tmp_path):
    src = _save(tmp_path / "a.png", natural)
    try:
        assert run("encode", src, "-m", "rec1", "--model", tiny_model, "--threads", "2").exit_code == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)
    assert run("encode", src, "--threads", "0", "-f").exit_code == 2


def test_tile(tiny_model, natural, tmp_path):
    from selfcodec.codec import files

    assert (cli._TILE, cli._MAX_TILE) == (files.TILE, files.MAX_TILE)
    src = tmp_path / "a.png"
    Image.fromarray(natural).save(src)  # 64x48
    for tile, tiles in ((32, 4), (None, 1)):
        out = tmp_path / f"t{tile}.svae"
        res = run("encode", src, "-m", "rec1", "--model", tiny_model, "-o", out, *(["--tile", tile] if tile else []))
        assert res.exit_code == 0, res.stderr
        assert api.info(out.read_bytes())["tiles"] == tiles
        assert api.decode(out.read_bytes(), model=tiny_model).size == (64, 48)
    for bad in ("8", "4096"):
        assert run("encode", src, "--tile", bad, "-f").exit_code == 2


def test_encode_output_must_be_svae(tiny_model, natural, tmp_path):
    src = _save(tmp_path / "a.png", natural)
    for name in ("x.webp", "x.png", "x"):
        res = run("encode", src, "-o", tmp_path / name, "--model", tiny_model)
        assert res.exit_code == 2 and ".svae" in res.stderr, res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


def test_decode_to_any_format_pillow_writes(tiny_model, natural, tmp_path):
    src = _save(tmp_path / "a.png", natural)
    assert run("encode", src, "-m", "rec1", "--model", tiny_model).exit_code == 0
    want = api.decode((tmp_path / "a.svae").read_bytes(), model=tiny_model, as_array=True)
    res = run("decode", tmp_path / "a.svae", "-o", tmp_path / "a.jpg", "--model", tiny_model)
    assert res.exit_code == 0 and "warning" in res.stderr and "JPEG" in res.stderr
    with Image.open(tmp_path / "a.jpg") as im:
        assert im.format == "JPEG" and im.size == (16, 16)
    for name, fmt in (("b.webp", "WEBP"), ("b.tif", "TIFF"), ("b.bmp", "BMP")):
        res = run("decode", tmp_path / "a.svae", "-o", tmp_path / name, "--model", tiny_model)
        assert res.exit_code == 0 and "warning" not in res.stderr, res.stderr
        with Image.open(tmp_path / name) as im:
            assert im.format == fmt
            np.testing.assert_array_equal(np.asarray(im.convert("RGB")), want)  # lossless formats: exact
    res = run("decode", tmp_path / "a.svae", "-o", tmp_path / "c.jpg", "--quiet", "--model", tiny_model)
    assert res.exit_code == 0 and res.stderr == ""


def test_allow_lossy_convert_flag_named_in_the_error(tiny_model, tmp_path):
    Image.new("CMYK", (16, 16), (10, 20, 30, 40)).save(tmp_path / "cmyk.jpg")
    res = run("encode", tmp_path / "cmyk.jpg", "-m", "rec1", "--model", tiny_model)
    assert res.exit_code == 3 and "--allow-lossy-convert" in res.stderr and "allow_lossy_convert=" not in res.stderr
    res = run("encode", tmp_path / "cmyk.jpg", "-m", "rec1", "--model", tiny_model, "--allow-lossy-convert")
    assert res.exit_code == 0, res.stderr


def test_strip_and_metadata_on_the_command_line(tiny_model, natural, tmp_path):
    src = _save(tmp_path / "a.png", natural, icc_profile=b"\0\0\0\x20not checked by the codec")
    assert run("encode", src, "-m", "rec1", "--model", tiny_model, "-o", tmp_path / "kept.svae").exit_code == 0
    assert run("encode", src, "-m", "rec1", "--model", tiny_model, "-o", tmp_path / "bare.svae", "--strip").exit_code == 0
    assert C.peek_header((tmp_path / "kept.svae").read_bytes()).metadata["icc_profile"].startswith(b"\0\0\0\x20")
    assert C.peek_header((tmp_path / "bare.svae").read_bytes()).metadata == {}
    assert run("decode", tmp_path / "kept.svae", "-o", tmp_path / "kept.png", "--model", tiny_model).exit_code == 0
    assert Image.open(tmp_path / "kept.png").info["icc_profile"].startswith(b"\0\0\0\x20")


def test_encode_max_pixels(tiny_model, natural, tmp_path, monkeypatch):
    src = _save(tmp_path / "a.png", natural)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # the encoder refuses above 200, as Pillow does
    res = run("encode", src, "-m", "rec1", "--model", tiny_model)
    assert res.exit_code == 3 and "--max-pixels 256" in res.stderr
    assert run("encode", src, "-m", "rec1", "--model", tiny_model, "--max-pixels", "256").exit_code == 0


def _python(code: str) -> str:
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_info_and_option_errors_do_not_import_torch(tiny_model, natural, tmp_path):
    data = api.encode(_save(tmp_path / "a.png", natural, icc_profile=b"profile"), "lossless", model=tiny_model)
    (tmp_path / "a.svae").write_bytes(data)
    code = ("import sys; from click.testing import CliRunner; import selfcodec.cli.main as cli_main; "
            "main = cli_main.main; "
            f"r = CliRunner().invoke(main, ['info', {str(tmp_path / 'a.svae')!r}]); "
            "assert r.exit_code == 0, r.output; print(r.output); "
            f"bad = [CliRunner().invoke(main, ['encode', {str(tmp_path / 'a.png')!r}, *opts]).exit_code "
            "for opts in (['-q', '101'], ['-l', '80'], ['-m', 'nope'], ['--threads', '0'], ['--tile', '4096'])]; "
            "assert bad == [2, 2, 2, 2, 2], bad; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    out = _python(code)
    assert "lossless" in out and "metadata" in out and "icc_profile: 7" in out
