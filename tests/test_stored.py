"""A lossless file is never larger than its pixels stored (codec/stored.py): tiny images and
graphics come out as a PNG, a lossless WebP or raw inside the container, and decode without the model."""

import io

import numpy as np
import pytest
from PIL import Image

from selfcodec import api
from selfcodec.codec import container as C
from selfcodec.codec import files, plans, stored
from selfcodec.errors import ChecksumError, FormatError

pytestmark = pytest.mark.usefixtures("stored_fallback")


def _png_bytes(img: np.ndarray) -> int:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG", optimize=True)
    return len(buf.getvalue())


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (32, 48)])
def test_tiny_images_are_never_larger_than_their_raw_pixels_plus_the_header(tiny_model, rng, shape):
    img = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    data = api.encode(img, "lossless", model=tiny_model)
    header = C.peek_header(data)
    assert header.mode == plans.STORED
    assert len(data) <= img.nbytes + 1 + C.header_size(data)
    assert np.array_equal(api.decode(data, as_array=True), img)  # no model needed: none is named
    assert api.info(data)["mode"] == "lossless" and api.info(data)["stored"]


def test_graphics_are_never_larger_than_their_png(tiny_model):
    img = np.zeros((64, 96, 3), np.uint8)
    img[:, 48:] = (200, 30, 30)
    img[20:40, 10:30] = 255
    data = api.encode(img, "lossless", model=tiny_model)
    assert len(data) <= _png_bytes(img) + 1 + C.header_size(data)  # the stream's kind byte
    assert np.array_equal(api.decode(data, as_array=True), img)


def test_grey_and_alpha_survive(tiny_model, rng):
    grey = rng.integers(0, 256, (6, 7), dtype=np.uint8)
    out = api.decode(api.encode(Image.fromarray(grey), "lossless", model=tiny_model))
    assert out.mode == "L" and np.array_equal(np.asarray(out), grey)
    rgba = rng.integers(0, 256, (5, 4, 4), dtype=np.uint8)
    out = api.decode(api.encode(Image.fromarray(rgba, "RGBA"), "lossless", model=tiny_model))
    assert out.mode == "RGBA" and np.array_equal(np.asarray(out), rgba)


def test_a_photo_keeps_the_models_file_where_it_beats_png(tiny_model, natural):
    """The model's (layered) file where it is clearly smaller than the PNG; otherwise the stored
    pixels (then perhaps a WebP, smaller than both) where they are smaller."""
    data = api.encode(natural, "lossless", model=tiny_model)
    models = api.encode(natural, "lossless", model=tiny_model, stored_fallback=False)
    assert C.peek_header(models).layered
    streams = sum(len(s) for t in C.unpack(models)[1] for s in t)
    if streams < stored.PNG_SPREAD * _png_bytes(natural) or len(stored.pack(natural, False)) >= streams:
        assert data == models
    else:
        assert not C.peek_header(data).layered and len(data) < len(models)


def test_the_stored_pixels_wait_for_the_model_to_lose_to_png(rng):
    """pack with the model's size: None where the model beats the PNG by more than PNG encoders
    differ (PNG_SPREAD); else the smallest kind, if it is smaller than the model's coding."""
    img = np.cumsum(rng.integers(-2, 3, (40, 56, 3)), axis=1).clip(-100, 100).astype(np.uint8) + 100
    png, full = _png_bytes(img), stored.pack(img, False)
    assert stored.pack(img, False, model_bytes=int(stored.PNG_SPREAD * png) - 1) is None
    assert stored.pack(img, False, model_bytes=png - 1) == (full if len(full) < png - 1 else None)
    assert stored.pack(img, False, model_bytes=png + 2) == full
    assert stored.pack(img, False, model_bytes=len(full)) is None  # never a stored stream that is not smaller


def test_damaged_stored_pixels_are_refused(tiny_model, rng):
    img = rng.integers(0, 256, (2, 3, 3), dtype=np.uint8)
    header, tiles, alpha = C.unpack(api.encode(img, "lossless", model=tiny_model))
    raw = tiles[0][0]
    for bad, what in ((b"\x07" + raw[1:], "kind"), (raw[:-1], "bytes for"), (b"\x01" + b"not a png", "PNG|stored")):
        with pytest.raises(FormatError, match=what):
            files.decode_rgb(C.pack(header, [[bad]], alpha))
    flipped = raw[:1] + bytes([raw[1] ^ 1]) + raw[2:]
    with pytest.raises(ChecksumError):
        files.decode_rgb(C.pack(header, [[flipped]], alpha))
    big = rng.integers(0, 256, (4, 3, 3), dtype=np.uint8)
    with pytest.raises(FormatError, match="stored"):  # a PNG of another size than the header's
        files.decode_rgb(C.pack(header, [[bytes([stored.PNG]) + _png(big)]], alpha))


def _png(img):
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG")
    return buf.getvalue()


def test_pillows_own_pixel_limit_does_not_refuse_a_stored_file(tiny_model, rng, monkeypatch):
    """The header's size has passed the caller's max_pixels; Pillow's bomb check is not applied again."""
    img = np.kron(rng.integers(0, 2, (5, 5, 1), dtype=np.uint8) * 255, np.ones((8, 8, 3), np.uint8))  # blocks
    data = api.encode(img, "lossless", model=tiny_model)
    assert C.peek_header(data).mode == plans.STORED
    header, _, alpha = C.unpack(data)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    for kind in (stored.PNG, stored.WEBP):  # whichever the encoder chose, either kind decodes
        data = C.pack(header, [[bytes([kind]) + _saved(img, kind)]], alpha)
        assert np.array_equal(api.decode(data, as_array=True, max_pixels=None), img)


def _saved(img, kind) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG") if kind == stored.PNG else Image.fromarray(img).save(buf, "WEBP", lossless=True)
    return buf.getvalue()


@pytest.mark.parametrize("grey", [False, True])
def test_the_smallest_of_png_and_webp_is_stored_and_decodes_exactly(rng, grey):
    """pack keeps the smaller of its kinds; unpack gives the pixels back, a grey image's one channel too."""
    smooth = np.cumsum(rng.integers(-2, 3, (40, 56, 1 if grey else 3)), axis=1).clip(-100, 100) + 128
    img = np.repeat(smooth, 3, axis=2).astype(np.uint8) if grey else smooth.astype(np.uint8)
    stream = stored.pack(img, grey)
    assert stream[0] == stored.WEBP and len(stream) < _png_bytes(img[..., 0] if grey else img)  # smooth: WebP wins
    assert np.array_equal(stored.unpack(stream, 40, 56, grey), img)
    webp = bytes([stored.WEBP]) + _saved(img, stored.WEBP)
    assert np.array_equal(stored.unpack(webp, 40, 56, grey), img)
    with pytest.raises(FormatError, match="WebP of 56x40 in a 40x56"):
        stored.unpack(webp, 56, 40, grey)
    with pytest.raises(FormatError, match="stored"):
        stored.unpack(webp[:-9], 40, 56, grey)
