"""selfcodec where Python image code lives: the top-level API (selfcodec.encode / decode / info),
the Pillow plugin (selfcodec.pillow), the decoder's pixel limit (max_pixels, --max-pixels) and
the command line's default mode. Uses tiny random-init models."""

from __future__ import annotations

import inspect
import io
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import selfcodec
from selfcodec import api, zoo
import selfcodec.cli.main as cli_main
from selfcodec.codec import container as C
from selfcodec.errors import FormatError, ModelMismatchError, TooManyPixelsError

ROOT = Path(__file__).resolve().parents[1]
cli = cli_main


@pytest.fixture(scope="module", autouse=True)
def plugin(pillow_plugin):
    return pillow_plugin


@pytest.fixture()
def decode_model(plugin, tiny_model):
    plugin.register(model=tiny_model)
    yield tiny_model
    plugin.register(model=None)


@pytest.fixture(scope="module")
def small(natural):
    return np.ascontiguousarray(natural[:24, :32])


def _images(small) -> dict:
    alpha = np.tile(np.linspace(0, 255, small.shape[1]).astype(np.uint8), (small.shape[0], 1))
    return {"L": Image.fromarray(small.mean(axis=2).astype(np.uint8), "L"),
            "RGB": Image.fromarray(small, "RGB"),
            "RGBA": Image.fromarray(np.dstack([small, alpha]), "RGBA")}


def _declaring(width: int, height: int, colour: int = C.COLOUR_RGB) -> bytes:
    """A short, valid container that declares a width x height image (its streams are junk)."""
    tile = 1024 if max(width, height) > 1024 else 0
    header = C.Header(model_name="tiny-ds", model_hash=bytes(8), mode=2, level=3, height=height, width=width,
                      colour=colour, pad_h=0, pad_w=0, tile_h=tile, tile_w=tile, n_streams=1, pixel_crc=0)
    return C.pack(header, [[b"j"]] * header.n_tiles)


def _runner():
    try:
        return CliRunner(mix_stderr=False)
    except TypeError:  # click >= 8.2 keeps stderr apart by itself
        return CliRunner()


# --------------------------------------------------------------------------- top-level API


def test_top_level_api_round_trip(tiny_model, small, tmp_path):
    data = selfcodec.encode(small, mode="lossless", model=tiny_model)
    assert isinstance(data, bytes) and data == api.encode(small, "lossless", model=tiny_model)
    np.testing.assert_array_equal(np.asarray(selfcodec.decode(data, model=tiny_model)), small)
    np.testing.assert_array_equal(selfcodec.decode(data, model=tiny_model, as_array=True), small)
    path = tmp_path / "x.svae"
    path.write_bytes(data)
    np.testing.assert_array_equal(np.asarray(selfcodec.decode(path, model=tiny_model)), small)
    with open(path, "rb") as f:
        np.testing.assert_array_equal(np.asarray(selfcodec.decode(f, model=tiny_model)), small)
    meta = selfcodec.info(data)
    assert meta == api.info(data) == selfcodec.info(str(path))
    assert (meta["mode"], meta["width"], meta["height"], meta["colour"]) == ("lossless", 32, 24, "RGB")
    lossy = selfcodec.encode(small, model=tiny_model)  # defaults: rec2 at the default level
    assert (selfcodec.info(lossy)["mode"], selfcodec.info(lossy)["level"]) == ("rec2", api.DEFAULT_LEVEL)


def test_top_level_defaults_and_docs_match_the_api():
    enc = inspect.signature(selfcodec.encode).parameters
    assert enc["mode"].default == inspect.signature(api.encode).parameters["mode"].default == "rec2"
    # None: the default level, unless quality= or a target chooses it (see the test above for the level)
    assert enc["level"].default is inspect.signature(api.encode).parameters["level"].default is None
    assert inspect.signature(selfcodec.decode).parameters["max_pixels"].default == \
        inspect.signature(api.decode).parameters["max_pixels"].default
    for f in (selfcodec.encode, selfcodec.decode, selfcodec.info):
        assert f.__doc__ and "selfcodec.api" in f.__doc__
    assert selfcodec.__version__


def test_import_selfcodec_and_opening_with_pillow_do_not_load_torch(tiny_model, small, tmp_path):
    path = tmp_path / "x.svae"
    path.write_bytes(api.encode(small, "rec2", model=tiny_model))
    code = ("import sys; import selfcodec, selfcodec.pillow; from PIL import Image; "
            f"im = Image.open({str(path)!r}); assert im.size == (32, 24) and im.mode == 'RGB', im; "
            "assert 'torch' not in sys.modules, 'torch imported'; "
            "assert callable(selfcodec.encode) and callable(selfcodec.decode) and callable(selfcodec.info)")
    _python(code)


def _python(code: str) -> str:
    """Run code in a fresh interpreter (whose modules start empty); its stdout."""
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return res.stdout


# --------------------------------------------------------------------------- pixel limit


def test_max_pixels_refuses_before_any_model_is_loaded(monkeypatch):
    data = _declaring(16384, 16384)  # 2^28 pixels in a few dozen bytes

    def no_model(*a, **k):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(zoo, "load", no_model)
    with pytest.raises(TooManyPixelsError) as e:  # the default: twice Pillow's limit (178,956,970)
        api.decode(data)
    msg = str(e.value)
    assert isinstance(e.value, FormatError) and len(msg.splitlines()) == 1
    assert "16384x16384 = 268,435,456 pixels" in msg and f"{2 * Image.MAX_IMAGE_PIXELS:,}" in msg
    assert "max_pixels=268435456" in msg and "--max-pixels" in msg
    with pytest.raises(TooManyPixelsError, match="above the limit of 1,000;"):
        selfcodec.decode(data, model="/nonexistent/model.safetensors", max_pixels=1000)
    with pytest.raises(AssertionError, match="a model was loaded"):  # under the limit: decoding starts
        api.decode(_declaring(32, 24), max_pixels=32 * 24)


def test_max_pixels_values(tiny_model, small, monkeypatch):
    data = api.encode(small, "lossless", model=tiny_model)
    n = small.shape[0] * small.shape[1]
    with pytest.raises(TooManyPixelsError):
        api.decode(data, model=tiny_model, max_pixels=n - 1)
    for limit in (n, None):
        np.testing.assert_array_equal(api.decode(data, model=tiny_model, max_pixels=limit, as_array=True), small)
    # the default follows Image.MAX_IMAGE_PIXELS as set at call time: an error above twice it
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", n // 2 - 1)
    with pytest.raises(TooManyPixelsError, match="twice PIL.Image.MAX_IMAGE_PIXELS"):
        api.decode(data, model=tiny_model)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", n // 2)
    api.decode(data, model=tiny_model)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with pytest.raises(ModelMismatchError):  # no limit: decoding goes on (to the model check)
        api.decode(_declaring(16384, 16384), model=tiny_model)
    for bad in (-1, 1.5, "many", True):
        with pytest.raises(Exception, match="max_pixels must be"):
            api.decode(data, model=tiny_model, max_pixels=bad)


def test_cli_max_pixels(tiny_model, small, tmp_path):
    src = tmp_path / "x.svae"
    src.write_bytes(api.encode(small, "lossless", model=tiny_model))
    out = tmp_path / "x.png"
    runner = _runner()
    res = runner.invoke(cli.main, ["decode", str(src), "-o", str(out), "--model", tiny_model, "--max-pixels", "100"])
    assert res.exit_code == 4, (res.exit_code, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("selfcodec: error: the file declares 32x24 = 768 pixels")
    assert "--max-pixels 768" in lines[0] and not out.exists()
    for limit in ("768", "0"):  # 0: no limit
        res = runner.invoke(cli.main, ["decode", str(src), "-o", str(out), "--model", tiny_model, "--force",
                                       "--max-pixels", limit])
        assert res.exit_code == 0, res.stderr
        np.testing.assert_array_equal(np.asarray(Image.open(out)), small)


def test_cli_refuses_a_huge_declared_size_without_loading_torch(tmp_path):
    src = tmp_path / "big.svae"
    src.write_bytes(_declaring(16384, 16384))
    code = ("import sys; from click.testing import CliRunner; import selfcodec.cli.main as cli_main; "
            f"r = CliRunner().invoke(cli_main.main, ['decode', {str(src)!r}, '-o', {str(tmp_path / 'o.png')!r}]); "
            "assert r.exit_code == 4, (r.exit_code, r.output); "
            "assert 'torch' not in sys.modules, 'torch imported'; print(r.output)")
    assert "selfcodec: error: the file declares 16384x16384 = 268,435,456 pixels" in _python(code)
    assert not (tmp_path / "o.png").exists()


# --------------------------------------------------------------------------- default mode


def test_cli_encode_defaults_to_rec2(tiny_model, small, tmp_path):
    Image.fromarray(small).save(tmp_path / "photo.png")
    res = _runner().invoke(cli.main, ["encode", str(tmp_path / "photo.png"), "-o", str(tmp_path / "photo.svae"),
                                      "--model", tiny_model])
    assert res.exit_code == 0, res.stderr
    meta = api.info((tmp_path / "photo.svae").read_bytes())
    assert (meta["mode"], meta["level"]) == ("rec2", api.DEFAULT_LEVEL)
    assert (tmp_path / "photo.svae").read_bytes() == api.encode(small, model=tiny_model)


# --------------------------------------------------------------------------- Pillow plugin


def test_pillow_registration(plugin):
    assert Image.registered_extensions()[".svae"] == "SVAE"
    assert Image.MIME["SVAE"] == "image/x-svae"
    assert "SVAE" in Image.SAVE and "SVAE" in Image.OPEN


def test_pillow_open_reads_header_only(decode_model, small, tmp_path, monkeypatch):
    path = tmp_path / "x.svae"
    data = api.encode(small, "rec2", model=decode_model)
    path.write_bytes(data)

    def no_decode(*a, **k):
        raise AssertionError("decoded on open")

    monkeypatch.setattr(api, "decode", no_decode)
    monkeypatch.setattr(zoo, "load", no_decode)
    with Image.open(path) as im:
        assert (im.format, im.size, im.mode) == ("SVAE", (32, 24), "RGB")
        with pytest.raises(AssertionError, match="decoded on open"):
            im.load()
    monkeypatch.undo()
    with Image.open(io.BytesIO(data)) as im:  # a file object works as well as a path
        assert im.size == (32, 24)
        np.testing.assert_array_equal(np.asarray(im), api.decode(data, model=decode_model, as_array=True))


@pytest.mark.parametrize("colour", ["L", "RGB", "RGBA"])
@pytest.mark.parametrize("mode", ["lossless", "rec2"])
def test_pillow_save_open_round_trip(decode_model, small, tmp_path, colour, mode):
    src = _images(small)[colour]
    path = tmp_path / "x.svae"
    src.save(path, mode=mode, level=2, model=decode_model)
    data = path.read_bytes()
    assert data == api.encode(src, mode, 2, model=decode_model)  # the save options reach the encoder
    meta = api.info(data)
    assert (meta["mode"], meta["level"], meta["colour"]) == (mode, 2, colour)
    with Image.open(path) as im:
        assert (im.format, im.mode, im.size) == ("SVAE", colour, src.size)
        out = np.asarray(im)
    want = np.asarray(src) if mode == "lossless" else api.decode(data, model=decode_model, as_array=True)
    np.testing.assert_array_equal(out, want)
    if colour == "RGBA":  # alpha is stored losslessly in every mode
        np.testing.assert_array_equal(out[..., 3], np.asarray(src)[..., 3])


def test_pillow_save_defaults(decode_model, small, tmp_path):
    src = Image.fromarray(small)
    buf = io.BytesIO()
    src.save(buf, format="SVAE", model=decode_model)
    meta = api.info(buf.getvalue())
    assert (meta["mode"], meta["level"]) == ("rec2", api.DEFAULT_LEVEL)
    with pytest.raises(Exception, match="level 99"):
        src.save(tmp_path / "bad.svae", level=99, model=decode_model)
    assert not (tmp_path / "bad.svae").exists()  # Pillow removes what a failing save created


def test_pillow_decompression_bomb_check(decode_model, small, tmp_path, monkeypatch):
    path = tmp_path / "x.svae"
    path.write_bytes(api.encode(small, "lossless", model=decode_model))
    n = small.shape[0] * small.shape[1]
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", n // 2 - 1)
    with pytest.raises(Image.DecompressionBombError):
        Image.open(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", n - 1)
    with pytest.warns(Image.DecompressionBombWarning):
        im = Image.open(path)
    with im:
        np.testing.assert_array_equal(np.asarray(im), small)  # under twice the limit: decodes
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    big = tmp_path / "big.svae"
    big.write_bytes(_declaring(16384, 16384))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        im = Image.open(big)  # Pillow's guard off: opens (the header is fine)
    with im:
        assert im.size == (16384, 16384)
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
        with pytest.raises(TooManyPixelsError):  # decoding honours Pillow's setting too, before any network
            im.load()
    with pytest.raises(Image.DecompressionBombError):
        Image.open(big)


def test_pillow_rejects_damaged_header(tmp_path):
    data = bytearray(_declaring(32, 24))
    data[12] ^= 0xFF
    with pytest.raises(Image.UnidentifiedImageError):
        Image.open(io.BytesIO(bytes(data)))
    with pytest.raises(Image.UnidentifiedImageError):
        Image.open(io.BytesIO(b"SVAE\x01"))
