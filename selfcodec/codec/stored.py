"""A lossless file whose pixels are stored, not modelled: as a PNG or a lossless WebP (libwebp,
through Pillow), whichever is smaller, or raw where both are larger (an image of a few pixels).
The encoder writes one instead of the model's lossless file where raw or PNG would be smaller
(tiny images, graphics, noise, photos the model codes badly), so a lossless .svae is never
larger than the PNG of its pixels, nor than the raw pixels plus the header. No model is needed
to decode it.

The file's one stream is a kind byte (RAW, PNG or WEBP) and the bytes (docs/format.md, "Stored pixels")."""

import io
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
from PIL import Image, PngImagePlugin, WebPImagePlugin

from ..errors import FormatError

RAW, PNG, WEBP = 0, 1, 2
_WEBP_MAX_SIDE = 16383  # libwebp's limit
# The model's file is kept only where it is this much smaller than Pillow's PNG: other PNG
# encoders' files of the same photo are up to 5 % smaller or larger (zlib level 9 in imagecodecs,
# on BSDS500 test), and a lossless .svae must not be larger than any of them.
PNG_SPREAD = 0.95


def png_later(rgb: np.ndarray, grey: bool) -> Future:
    """pack's PNG of the pixels, made in a thread while the model codes the image (zlib lets
    other threads run): a future to pass to pack."""
    pool = ThreadPoolExecutor(1)
    future = pool.submit(_png, _pixel_image(rgb, grey))
    pool.shutdown(wait=False)
    return future


def pack(rgb: np.ndarray, grey: bool, model_bytes: int | None = None, png: Future | None = None) -> bytes | None:
    """The stream of an image (uint8 H x W x 3; `grey`: its three channels are equal, one is kept):
    the smallest of raw, PNG and lossless WebP. With `model_bytes` (the model's coding), None
    unless raw or PNG is smaller than that, or within PNG_SPREAD of it, and the smallest stored
    stream is smaller still: a photo the model codes clearly better than a PNG keeps the model's
    file, whose layers are the lower modes' files, even where a WebP would be smaller."""
    im = _pixel_image(rgb, grey)
    kinds = {RAW: im.tobytes(), PNG: png.result() if png is not None else _png(im)}
    if model_bytes is not None and model_bytes < PNG_SPREAD * min(len(b) for b in kinds.values()):
        return None
    if max(im.size) <= _WEBP_MAX_SIDE:  # quality 75, method 6: libwebp's effort that pays (100 is 20x slower for 1 %)
        kinds[WEBP] = _saved(im.convert("RGB"), "WEBP", lossless=True, quality=75, method=6)
    kind = min(kinds, key=lambda k: len(kinds[k]))
    if model_bytes is not None and len(kinds[kind]) + 1 >= model_bytes:
        return None
    return bytes([kind]) + kinds[kind]


def _pixel_image(rgb: np.ndarray, grey: bool) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(rgb[..., 0] if grey else rgb), "L" if grey else "RGB")


def _png(im: Image.Image) -> bytes:
    return _saved(im, "PNG", optimize=True)


def _saved(im: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **options)
    return buf.getvalue()


def unpack(stream: bytes, h: int, w: int, grey: bool) -> np.ndarray:
    """pack's inverse (uint8 H x W x 3); FormatError unless the stream holds exactly an h x w image."""
    c = 1 if grey else 3
    if not stream or stream[0] not in (RAW, PNG, WEBP):
        raise FormatError(f"corrupt stored pixels: kind {stream[:1].hex() or 'missing'} (0 raw, 1 PNG or 2 WebP expected)")
    body = stream[1:]
    if stream[0] == RAW:
        if len(body) != h * w * c:
            raise FormatError(f"corrupt stored pixels: {len(body)} bytes for {h}x{w}x{c}")
        pixels = np.frombuffer(body, np.uint8).reshape(h, w, c)
    else:
        pixels = _decoded(body, stream[0], h, w, grey)
    return np.ascontiguousarray(np.repeat(pixels, 3, axis=2) if grey else pixels)


def _decoded(body: bytes, kind: int, h: int, w: int, grey: bool) -> np.ndarray:
    """The h x w x c pixels of a stored PNG (mode L for a grey file, RGB otherwise) or WebP
    (RGB; a grey file keeps one channel), its size checked before its pixels are decoded (and
    not against Pillow's decompression-bomb limit: the header's size has passed the caller's
    max_pixels already); FormatError for anything else."""
    try:
        if kind == PNG:
            with PngImagePlugin.PngImageFile(io.BytesIO(body)) as im:
                _check_size("PNG", im.size, im.mode, "L" if grey else "RGB", w, h, grey)
                pixels = np.asarray(im).reshape(h, w, -1)
        else:
            _check_size("WebP", _webp_size(body), "RGB", "RGB", w, h, grey)
            import cv2  # (Pillow's WebP reader applies its own pixel limit)

            bgr = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_UNCHANGED)
            if bgr is None or bgr.shape != (h, w, 3):
                raise FormatError(f"corrupt stored pixels: a WebP that decodes to {None if bgr is None else bgr.shape}")
            pixels = bgr[..., ::-1]
    except FormatError:
        raise
    except Exception as e:  # Pillow's or OpenCV's errors on a damaged PNG or WebP
        raise FormatError(f"corrupt stored pixels: {type(e).__name__}: {e}") from None
    if grey and pixels.shape[2] == 3:
        if not (np.array_equal(pixels[..., 0], pixels[..., 1]) and np.array_equal(pixels[..., 0], pixels[..., 2])):
            raise FormatError("corrupt stored pixels: a colour WebP in a grey file")
        pixels = pixels[..., :1]
    return pixels


def _check_size(name, size, mode, want, w, h, grey) -> None:
    if size != (w, h) or mode != want:
        raise FormatError(f"corrupt stored pixels: a {mode} {name} of {size[0]}x{size[1]} in a "
                          f"{w}x{h} {'grey' if grey else 'RGB'} file")


def _webp_size(body: bytes) -> tuple:
    """(width, height) of a simple lossless WebP (RIFF, VP8L, no alpha: what pack writes)."""
    if len(body) < 25 or body[:4] != b"RIFF" or body[8:16] != b"WEBPVP8L" or body[20] != 0x2F:
        raise FormatError("corrupt stored pixels: not a simple lossless WebP")
    bits = int.from_bytes(body[21:25], "little")
    if bits >> 28 & 1:  # the alpha hint: pack never writes one
        raise FormatError("corrupt stored pixels: a WebP with alpha")
    return (bits & 0x3FFF) + 1, (bits >> 14 & 0x3FFF) + 1
