"""A lossless file whose pixels are stored, not modelled: as a PNG, or raw where even a PNG is
larger (an image of a few pixels). The encoder writes one instead of the model's lossless file
when it is the smaller (tiny images, graphics, noise), so a lossless .svae is never larger than
the PNG of its pixels, nor than the raw pixels plus the header. No model is needed to decode it.

The file's one stream is a kind byte (RAW or PNG) and the bytes (docs/format.md, "Stored pixels")."""

import io

import numpy as np
from PIL import Image, PngImagePlugin

from ..errors import FormatError

RAW, PNG = 0, 1


def pack(rgb: np.ndarray, grey: bool) -> bytes:
    """The stream of an image (uint8 H x W x 3; `grey`: its three channels are equal, one is kept)."""
    pixels = np.ascontiguousarray(rgb[..., 0] if grey else rgb)
    buf = io.BytesIO()
    Image.fromarray(pixels, "L" if grey else "RGB").save(buf, "PNG", optimize=True)
    png = buf.getvalue()
    raw = pixels.tobytes()
    return bytes([PNG]) + png if len(png) < len(raw) else bytes([RAW]) + raw


def unpack(stream: bytes, h: int, w: int, grey: bool) -> np.ndarray:
    """pack's inverse (uint8 H x W x 3); FormatError unless the stream holds exactly an h x w image."""
    c = 1 if grey else 3
    if not stream or stream[0] not in (RAW, PNG):
        raise FormatError(f"corrupt stored pixels: kind {stream[:1].hex() or 'missing'} (0 raw or 1 PNG expected)")
    body = stream[1:]
    if stream[0] == RAW:
        if len(body) != h * w * c:
            raise FormatError(f"corrupt stored pixels: {len(body)} bytes for {h}x{w}x{c}")
        pixels = np.frombuffer(body, np.uint8).reshape(h, w, c)
    else:
        try:
            # not Image.open: its decompression-bomb limit is Pillow's, where the header's size
            # has passed the caller's max_pixels already
            with PngImagePlugin.PngImageFile(io.BytesIO(body)) as im:
                if im.size != (w, h) or im.mode != ("L" if grey else "RGB"):  # before its pixels are decoded
                    raise FormatError(f"corrupt stored pixels: a {im.mode} PNG of {im.size[0]}x{im.size[1]} in a "
                                      f"{w}x{h} {'grey' if grey else 'RGB'} file")
                pixels = np.asarray(im).reshape(h, w, c)
        except FormatError:
            raise
        except Exception as e:  # Pillow's errors on a damaged PNG
            raise FormatError(f"corrupt stored pixels: {type(e).__name__}: {e}") from None
    return np.ascontiguousarray(np.repeat(pixels, 3, axis=2) if grey else pixels)
