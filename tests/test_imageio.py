"""selfcodec.imageio: every colour type in and back out, and every refusal."""

from __future__ import annotations

import io
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
from PIL import Image

from selfcodec.errors import NeedsLossyConvertError, UnsupportedImageError
from selfcodec.imageio import MAX_PIXELS, ImageMeta, image_to_bytes, load_image, save_image, to_pil

RNG = np.random.default_rng(0)


def _png(img: Image.Image, **kw) -> bytes:
    bio = io.BytesIO()
    img.save(bio, "PNG", **kw)
    return bio.getvalue()


def _rgb(h=5, w=7):
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_header_only(width: int, height: int, bit_depth=8, colour_type=2) -> bytes:
    """A PNG that declares width x height but carries (almost) no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    idat = zlib.compress(b"\0" * 16)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _png16(arr: np.ndarray) -> bytes:
    """16-bit PNG written by OpenCV (Pillow cannot write 16-bit colour)."""
    cv2 = pytest.importorskip("cv2")
    if arr.ndim == 3:
        arr = arr[..., [2, 1, 0, 3][: arr.shape[2]]] if arr.shape[2] == 4 else arr[..., ::-1]
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(arr))
    assert ok
    return buf.tobytes()


# ------------------------------------------------------------------ round trips


@pytest.mark.parametrize("as_", ["bytes", "path", "pil", "stream"])
def test_rgb_round_trip_every_source(tmp_path, as_):
    a = _rgb()
    data = _png(Image.fromarray(a))
    if as_ == "bytes":
        src = data
    elif as_ == "path":
        src = tmp_path / "x.png"
        src.write_bytes(data)
    elif as_ == "pil":
        src = Image.open(io.BytesIO(data))
    else:
        src = io.BytesIO(data)
    rgb, meta = load_image(src)
    assert rgb.dtype == np.uint8 and rgb.shape == (5, 7, 3) and rgb.flags.c_contiguous
    assert meta.colour == "RGB" and meta.alpha is None
    np.testing.assert_array_equal(rgb, a)
    back = to_pil(rgb, meta)
    assert back.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(back), a)


def test_grayscale_L():
    g = RNG.integers(0, 256, (4, 6), dtype=np.uint8)
    rgb, meta = load_image(_png(Image.fromarray(g, "L")))
    assert meta.colour == "L" and meta.alpha is None and meta.pil_mode == "L"
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], g)
    back = to_pil(rgb, meta)
    assert back.mode == "L"
    np.testing.assert_array_equal(np.asarray(back), g)


def test_bilevel_1():
    b = RNG.integers(0, 2, (4, 9)).astype(bool)
    rgb, meta = load_image(_png(Image.fromarray(b).convert("1")))
    assert meta.colour == "L"
    np.testing.assert_array_equal(rgb[..., 0], b.astype(np.uint8) * 255)


def test_grayscale_LA_keeps_alpha():
    la = RNG.integers(0, 256, (3, 5, 2), dtype=np.uint8)
    rgb, meta = load_image(_png(Image.fromarray(la, "LA")))
    assert meta.colour == "L" and meta.pil_mode == "LA"
    np.testing.assert_array_equal(meta.alpha, la[..., 1])
    np.testing.assert_array_equal(rgb[..., 2], la[..., 0])
    back = to_pil(rgb, meta)
    assert back.mode == "LA"
    np.testing.assert_array_equal(np.asarray(back), la)


def test_rgba_keeps_alpha():
    a = RNG.integers(0, 256, (6, 4, 4), dtype=np.uint8)
    rgb, meta = load_image(_png(Image.fromarray(a, "RGBA")))
    assert meta.colour == "RGBA" and meta.pil_mode == "RGBA"
    np.testing.assert_array_equal(rgb, a[..., :3])
    np.testing.assert_array_equal(meta.alpha, a[..., 3])
    back = to_pil(rgb, meta)
    assert back.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(back), a)


def test_palette_without_transparency_is_lossless_rgb():
    a = _rgb(8, 8)
    p = Image.fromarray(a).quantize(16)
    expected = np.asarray(p.convert("RGB"))
    rgb, meta = load_image(_png(p))
    assert meta.colour == "RGB" and meta.alpha is None
    np.testing.assert_array_equal(rgb, expected)


def test_palette_with_transparency_keeps_alpha():
    a = _rgb(8, 8)
    p = Image.fromarray(a).quantize(16)
    index = np.asarray(p)
    rgb, meta = load_image(_png(p, transparency=int(index[0, 0])))
    assert meta.colour == "RGBA"
    assert meta.alpha[0, 0] == 0
    np.testing.assert_array_equal(meta.alpha == 0, index == index[0, 0])
    np.testing.assert_array_equal(rgb, np.asarray(p.convert("RGB")))


def test_rgb_and_gray_with_trns_key_keep_alpha():
    a = _rgb()
    a[0, 0] = (1, 2, 3)
    rgb, meta = load_image(_png(Image.fromarray(a), transparency=(1, 2, 3)))
    assert meta.colour == "RGBA" and meta.alpha[0, 0] == 0
    g = np.full((2, 2), 9, np.uint8)
    g[1, 1] = 5
    rgb, meta = load_image(_png(Image.fromarray(g, "L"), transparency=5))
    assert meta.colour == "L" and meta.alpha.tolist() == [[255, 255], [255, 0]]


@pytest.mark.parametrize("shape", [(4, 5), (4, 5, 1), (4, 5, 3), (4, 5, 4)])
def test_numpy_arrays(shape):
    a = RNG.integers(0, 256, shape, dtype=np.uint8)
    rgb, meta = load_image(a)
    assert rgb.shape == (4, 5, 3)
    if len(shape) == 2 or shape[2] == 1:
        assert meta.colour == "L"
        np.testing.assert_array_equal(rgb[..., 1], a.reshape(4, 5))
    elif shape[2] == 3:
        assert meta.colour == "RGB"
        np.testing.assert_array_equal(rgb, a)
    else:
        assert meta.colour == "RGBA"
        np.testing.assert_array_equal(meta.alpha, a[..., 3])
    back = np.asarray(to_pil(rgb, meta))
    np.testing.assert_array_equal(back.reshape(a.shape), a)


def test_bad_arrays():
    with pytest.raises(UnsupportedImageError):
        load_image(np.zeros((4, 5, 2), np.uint8))
    with pytest.raises(UnsupportedImageError, match="float"):
        load_image(np.zeros((4, 5, 3), np.float32))
    rgb, meta = load_image(np.full((4, 5, 3), 0.5, np.float32), allow_lossy_convert=True)
    assert meta.lossy and rgb[0, 0, 0] == 128


def test_to_pil_averages_unequal_gray_channels():
    rgb = np.array([[[10, 11, 12]]], np.uint8)
    assert np.asarray(to_pil(rgb, ImageMeta("L"))).tolist() == [[11]]
    with pytest.raises(ValueError):
        to_pil(rgb, ImageMeta("RGB", alpha=np.zeros((2, 2), np.uint8)))


def test_save_image_and_image_to_bytes(tmp_path):
    a = RNG.integers(0, 256, (3, 4, 4), dtype=np.uint8)
    path = tmp_path / "out.png"
    save_image(a, path)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), a)
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]
    save_image(Image.fromarray(a[..., 0], "L"), path)  # replaces
    assert Image.open(path).mode == "L"
    for fmt in ("PNG", "TIFF", "WEBP"):
        back = Image.open(io.BytesIO(image_to_bytes(a, fmt)))
        np.testing.assert_array_equal(np.asarray(back.convert("RGBA")), a)


# ------------------------------------------------------------------ 16 bit


def test_16bit_gray_exact_and_not():
    g8 = RNG.integers(0, 256, (3, 4), dtype=np.uint8)
    g16 = g8.astype(np.uint16) * 257
    rgb, meta = load_image(_png16(g16))
    assert meta.colour == "L" and meta.bit_depth == 16 and not meta.lossy
    np.testing.assert_array_equal(rgb[..., 0], g8)
    g16[0, 0] += 1
    data = _png16(g16)
    with pytest.raises(UnsupportedImageError, match="multiple of 257.*allow_lossy_convert"):
        load_image(data)
    rgb, meta = load_image(data, allow_lossy_convert=True)
    assert meta.lossy and rgb[0, 0, 0] == g8[0, 0]


@pytest.mark.parametrize("channels", [3, 4])
def test_16bit_colour_png_exact_and_not(channels):
    a8 = RNG.integers(0, 256, (3, 4, channels), dtype=np.uint8)
    a16 = a8.astype(np.uint16) * 257
    rgb, meta = load_image(_png16(a16))
    np.testing.assert_array_equal(rgb, a8[..., :3])
    assert meta.bit_depth == 16
    if channels == 4:
        np.testing.assert_array_equal(meta.alpha, a8[..., 3])
    a16[1, 2, 0] = 1000  # not a multiple of 257: Pillow alone would silently truncate it
    with pytest.raises(UnsupportedImageError, match="16-bit"):
        load_image(_png16(a16))
    rgb, meta = load_image(_png16(a16), allow_lossy_convert=True)
    assert meta.lossy and rgb[1, 2, 0] == round(1000 / 257)


def test_16bit_numpy():
    a = RNG.integers(0, 256, (3, 4, 3)).astype(np.uint16) * 257
    rgb, meta = load_image(a)
    np.testing.assert_array_equal(rgb, a // 257)
    a[0, 0, 0] = 3
    with pytest.raises(UnsupportedImageError, match="8 bits"):
        load_image(a)


# ------------------------------------------------------------------ refusals


def test_cmyk_needs_lossy_conversion():
    data = io.BytesIO()
    Image.new("CMYK", (4, 4), (10, 20, 30, 40)).save(data, "JPEG")
    with pytest.raises(UnsupportedImageError, match="CMYK.*allow_lossy_convert"):
        load_image(data.getvalue())
    rgb, meta = load_image(data.getvalue(), allow_lossy_convert=True)
    assert rgb.shape == (4, 4, 3) and meta.colour == "RGB" and meta.lossy and meta.source_mode == "CMYK"


def test_animation_needs_lossy_conversion():
    frames = [Image.fromarray(_rgb(4, 4)).quantize(8) for _ in range(2)]
    bio = io.BytesIO()
    frames[0].save(bio, "GIF", save_all=True, append_images=frames[1:])
    with pytest.raises(UnsupportedImageError, match="2 frames"):
        load_image(bio.getvalue())
    rgb, _ = load_image(bio.getvalue(), allow_lossy_convert=True)
    assert rgb.shape == (4, 4, 3)


def test_not_an_image(tmp_path):
    with pytest.raises(UnsupportedImageError, match=r"^cannot read <bytes>: "):
        load_image(b"hello, this is text")
    p = tmp_path / "notes.png"
    p.write_text("not a png")
    with pytest.raises(UnsupportedImageError, match=r"cannot read .*notes\.png"):
        load_image(p)
    with pytest.raises(FileNotFoundError):  # file-system errors stay OSError
        load_image(tmp_path / "missing.png")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file(fmt):
    bio = io.BytesIO()
    Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(bio, fmt)
    data = bio.getvalue()
    with pytest.raises(UnsupportedImageError, match="cannot read"):
        load_image(data[: len(data) // 2])


def test_huge_declared_size_refused_without_allocating():
    data = _png_header_only(100_000, 100_000)
    tracemalloc.start()
    try:
        with pytest.raises(UnsupportedImageError, match="too large|limit"):
            load_image(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20
    assert Image.MAX_IMAGE_PIXELS is not None  # Pillow's own guard restored


def test_just_over_max_pixels_refused_by_our_limit():
    w = 2**14
    h = MAX_PIXELS // w + 1  # between Pillow's default guard and 2 * MAX_PIXELS
    with pytest.raises(UnsupportedImageError, match=f"limit of {MAX_PIXELS}"):
        load_image(_png_header_only(w, h))


def test_encoder_keeps_pillows_decompression_bomb_limit(monkeypatch, tmp_path):
    path = tmp_path / "x.png"
    Image.fromarray(RNG.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(path)
    sources = (path, path.read_bytes(), Image.open(path), np.asarray(Image.open(path)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # refused above twice it, as Pillow does
    for src in sources:
        with pytest.raises(UnsupportedImageError, match=r"16x16 = 256 pixels, above the limit of 200.*--max-pixels 256"):
            load_image(src)
        assert load_image(src, max_pixels=256)[0].shape == (16, 16, 3)
        assert load_image(src, max_pixels=None)[0].shape == (16, 16, 3)
    with pytest.raises(UnsupportedImageError, match="above the limit of 255;"):
        load_image(path, max_pixels=255)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 128)
    assert load_image(path)[0].shape == (16, 16, 3)
    assert Image.MAX_IMAGE_PIXELS == 128  # put back as it was


def test_lossy_conversion_error_names_the_option():
    cmyk = Image.new("CMYK", (4, 4))
    with pytest.raises(NeedsLossyConvertError, match=r"CMYK.*\(or pass allow_lossy_convert=True\)") as e:
        load_image(cmyk)
    assert "--allow-lossy-convert" in str(e.value.naming("--allow-lossy-convert"))
