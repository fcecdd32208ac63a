"""Classic codecs as baselines: encode/decode one uint8 RGB image.

Every codec function has the signature ``f(img, q) -> (data, decoded, enc_s, dec_s)``
with ``img`` an ``H x W x 3`` uint8 RGB array, ``data`` the whole file as
bytes, ``decoded`` the decoded ``H x W x 3`` uint8 array, and the wall-clock
encode / decode seconds.  Lossless functions take only ``img``.

Settings (see docs/design-notes §4 "baseline parameter traps"):

=================  =========================================================
jpeg420 / jpeg444  Pillow (libjpeg-turbo), ``quality=q``, ``subsampling`` 2
                   (4:2:0) or 0 (4:4:4), Pillow defaults otherwise (no
                   ``optimize``), like CompressAI's published JPEG curve.
webp               imagecodecs, ``lossless=False``, ``level=q``, ``method=4``
                   (libwebp's default speed/quality trade-off, as Pillow).
avif               imagecodecs (libavif/aom), ``level=q`` (quality 0-100),
                   ``speed=6`` (the default is the slowest speed).
jpegxl             imagecodecs (libjxl), ``lossless=False``, ``distance=q``,
                   ``effort=7`` (imagecodecs defaults to effort 5).
jpeg2000           imagecodecs (OpenJPEG), J2K codestream, irreversible 9/7,
                   ``mct=True`` (colour transform), ``level=q`` = target PSNR
                   in dB (OpenJPEG ``tcp_distoratio``, fixed-quality mode).
                   Fallback: Pillow ``quality_mode='dB'``, ``mct=1``.
png                imagecodecs zlib ``level=9`` (max compression).
webp_ll            imagecodecs ``lossless=True``, ``level=90``, ``method=5``
                   (``level=100, method=6`` is ~20x slower for ~0.1% gain).
jpegxl_ll          imagecodecs ``lossless=True``, ``effort=7``.
jpeg2000_ll        imagecodecs reversible 5/3 wavelet + RCT (``mct=True``).
=================  =========================================================

Missing libraries are never skipped silently: :func:`lossy_codecs` and
:func:`lossless_codecs` return every codec with ``available`` and a
``reason``; callers print the reason.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from PIL import Image

try:  # optional: the benchmark still runs JPEG (Pillow) without it
    import imagecodecs as _ic
    _IC_ERR = None
except Exception as e:  # pragma: no cover - depends on the environment
    _ic = None
    _IC_ERR = f"imagecodecs not importable ({e!r})"


def _timed(enc: Callable[[], bytes], dec: Callable[[bytes], np.ndarray]):
    t0 = time.perf_counter()
    data = enc()
    t1 = time.perf_counter()
    out = dec(data)
    t2 = time.perf_counter()
    out = np.asarray(out)
    if out.ndim == 3 and out.shape[2] == 4:
        out = out[:, :, :3]
    return bytes(data), np.ascontiguousarray(out, dtype=np.uint8), t1 - t0, t2 - t1


def _rgb(img: np.ndarray) -> np.ndarray:
    img = np.ascontiguousarray(img)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected HxWx3 uint8, got {img.shape} {img.dtype}")
    return img


# ----------------------------------------------------------------------------
# Lossy
# ----------------------------------------------------------------------------

def _pil_decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def _pil_jpeg(img: np.ndarray, q: int, subsampling: int):
    img = _rgb(img)

    def enc():
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=int(q), subsampling=subsampling)
        return buf.getvalue()

    return _timed(enc, _pil_decode)


def jpeg420(img: np.ndarray, q: int):
    """JPEG 4:2:0 via Pillow, quality q (1-95)."""
    return _pil_jpeg(img, q, 2)


def jpeg444(img: np.ndarray, q: int):
    """JPEG 4:4:4 via Pillow, quality q (1-95)."""
    return _pil_jpeg(img, q, 0)


def webp(img: np.ndarray, q: float):
    """Lossy WebP via imagecodecs (level=q, method=4)."""
    img = _rgb(img)
    return _timed(lambda: _ic.webp_encode(img, level=q, lossless=False, method=4), _ic.webp_decode)


def avif(img: np.ndarray, q: int):
    """AVIF via imagecodecs (level=q quality 0-100, speed=6)."""
    img = _rgb(img)
    return _timed(lambda: _ic.avif_encode(img, level=int(q), speed=6), _ic.avif_decode)


def jpegxl(img: np.ndarray, distance: float):
    """Lossy JPEG XL via imagecodecs (distance, effort=7, lossless=False)."""
    img = _rgb(img)
    return _timed(lambda: _ic.jpegxl_encode(img, distance=float(distance), effort=7, lossless=False),
                  _ic.jpegxl_decode)


def jpeg2000(img: np.ndarray, target_psnr: float):
    """JPEG 2000 via imagecodecs/OpenJPEG: irreversible, mct, fixed-PSNR target."""
    img = _rgb(img)
    return _timed(lambda: _ic.jpeg2k_encode(img, level=float(target_psnr), mct=True), _ic.jpeg2k_decode)


def jpeg2000_pillow(img: np.ndarray, target_psnr: float):
    """JPEG 2000 via Pillow/OpenJPEG fallback (quality_mode='dB', mct=1)."""
    img = _rgb(img)

    def enc():
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG2000", quality_mode="dB", quality_layers=[float(target_psnr)],
                                  irreversible=True, mct=1, no_jp2=True)
        return buf.getvalue()

    return _timed(enc, _pil_decode)


# ----------------------------------------------------------------------------
# Lossless
# ----------------------------------------------------------------------------

def png(img: np.ndarray):
    img = _rgb(img)
    return _timed(lambda: _ic.png_encode(img, level=9), _ic.png_decode)


def png_pillow(img: np.ndarray):
    img = _rgb(img)

    def enc():
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "PNG", optimize=True, compress_level=9)
        return buf.getvalue()

    return _timed(enc, _pil_decode)


def webp_lossless(img: np.ndarray):
    img = _rgb(img)
    return _timed(lambda: _ic.webp_encode(img, level=90, lossless=True, method=5), _ic.webp_decode)


def jpegxl_lossless(img: np.ndarray):
    img = _rgb(img)
    return _timed(lambda: _ic.jpegxl_encode(img, effort=7, lossless=True), _ic.jpegxl_decode)


def jpeg2000_lossless(img: np.ndarray):
    img = _rgb(img)
    return _timed(lambda: _ic.jpeg2k_encode(img, level=None, reversible=True, mct=True), _ic.jpeg2k_decode)


# ----------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------

@dataclass
class Codec:
    name: str
    label: str
    fn: Callable
    param: str = ""
    sweep: list = field(default_factory=list)
    quick_sweep: list = field(default_factory=list)
    settings: str = ""
    available: bool = True
    reason: str = ""
    lossless: bool = False

    def run(self, img, q=None):
        return self.fn(img) if self.lossless else self.fn(img, q)


def _ic_flag(flag: str) -> tuple[bool, str]:
    if _ic is None:
        return False, _IC_ERR or "imagecodecs missing"
    mod = getattr(_ic, flag, None)
    ok = bool(getattr(mod, "available", False))
    return ok, "" if ok else f"imagecodecs.{flag}.available is False (codec not built in)"


def _smoke(codec: Codec) -> Codec:
    """Run the codec on a tiny image so that a broken build is reported, not hidden."""
    if not codec.available:
        return codec
    rng = np.random.default_rng(0)
    img = (rng.random((24, 40, 3)) * 255).astype(np.uint8)
    try:
        data, dec, _, _ = codec.run(img, None if codec.lossless else codec.quick_sweep[len(codec.quick_sweep) // 2])
        if dec.shape != img.shape:
            raise RuntimeError(f"decoded shape {dec.shape} != {img.shape}")
        if codec.lossless and not np.array_equal(dec, img):
            raise RuntimeError("lossless round trip is not exact")
    except Exception as e:
        codec.available = False
        codec.reason = f"smoke test failed: {e!r}"
    return codec


def lossy_codecs() -> list[Codec]:
    """All classic lossy codecs with their sweeps (~0.1-2 bpp on Kodak).

    ``quick_sweep`` has 3 points (low/mid/high rate)."""
    out = [
        Codec("jpeg420", "JPEG 4:2:0 (Pillow)", jpeg420, "quality",
              [5, 10, 15, 20, 30, 40, 50, 60, 75, 85, 92], [10, 50, 85],
              "Pillow quality=q subsampling=4:2:0, optimize=False"),
        Codec("jpeg444", "JPEG 4:4:4 (Pillow)", jpeg444, "quality",
              [5, 10, 15, 20, 30, 40, 50, 60, 75, 85, 92], [10, 50, 85],
              "Pillow quality=q subsampling=4:4:4, optimize=False"),
        Codec("webp", "WebP", webp, "level",
              [0, 5, 10, 20, 30, 45, 60, 75, 85, 92], [5, 45, 85],
              "imagecodecs webp_encode(level=q, lossless=False, method=4)"),
        Codec("avif", "AVIF (aom, speed 6)", avif, "level",
              [10, 20, 30, 40, 50, 60, 70, 78, 85], [20, 50, 78],
              "imagecodecs avif_encode(level=q, speed=6), 8-bit, default pixel format"),
        Codec("jpegxl", "JPEG XL (effort 7)", jpegxl, "distance",
              [12.0, 8.0, 6.0, 4.0, 3.0, 2.0, 1.5, 1.0, 0.7], [8.0, 3.0, 1.0],
              "imagecodecs jpegxl_encode(distance=q, effort=7, lossless=False)"),
        Codec("jpeg2000", "JPEG 2000 (OpenJPEG)", jpeg2000, "target_psnr_db",
              [24.0, 26.0, 28.0, 30.0, 32.0, 34.0, 36.0, 38.0, 40.0], [26.0, 32.0, 38.0],
              "imagecodecs jpeg2k_encode(level=target PSNR dB, mct=True), J2K codestream, 9/7"),
    ]
    for c in out:
        if c.name == "webp":
            c.available, c.reason = _ic_flag("WEBP")
        elif c.name == "avif":
            c.available, c.reason = _ic_flag("AVIF")
        elif c.name == "jpegxl":
            c.available, c.reason = _ic_flag("JPEGXL")
        elif c.name == "jpeg2000":
            c.available, c.reason = _ic_flag("JPEG2K")
            if not c.available:
                try:
                    from PIL import features
                    if features.check("jpg_2000"):
                        c.fn, c.available = jpeg2000_pillow, True
                        c.label = "JPEG 2000 (Pillow, mct=1)"
                        c.settings = "Pillow JPEG2000 quality_mode='dB', mct=1, irreversible"
                        c.reason = "imagecodecs JPEG2K missing: using Pillow fallback"
                except Exception:
                    pass
        _smoke(c)
    return out


def lossless_codecs() -> list[Codec]:
    out = [
        Codec("png", "PNG (zlib level 9)", png, settings="imagecodecs png_encode(level=9)", lossless=True),
        Codec("webp_ll", "WebP lossless", webp_lossless,
              settings="imagecodecs webp_encode(lossless=True, level=90, method=5)", lossless=True),
        Codec("jpegxl_ll", "JPEG XL lossless (effort 7)", jpegxl_lossless,
              settings="imagecodecs jpegxl_encode(lossless=True, effort=7)", lossless=True),
        Codec("jpeg2000_ll", "JPEG 2000 lossless", jpeg2000_lossless,
              settings="imagecodecs jpeg2k_encode(reversible=True, mct=True)", lossless=True),
    ]
    flags = {"png": "PNG", "webp_ll": "WEBP", "jpegxl_ll": "JPEGXL", "jpeg2000_ll": "JPEG2K"}
    for c in out:
        c.available, c.reason = _ic_flag(flags[c.name])
        if c.name == "png" and not c.available:
            c.fn, c.available, c.label = png_pillow, True, "PNG (Pillow, optimize)"
            c.settings, c.reason = "Pillow PNG optimize=True compress_level=9", "imagecodecs PNG missing: Pillow fallback"
        _smoke(c)
    return out


def versions() -> dict:
    import PIL
    v = {"numpy": np.__version__, "pillow": PIL.__version__,
         "imagecodecs": getattr(_ic, "__version__", None)}
    if _ic is not None:
        for k in ("jpeg8", "jpeg", "webp", "avif", "aom", "jpegxl", "openjpeg", "zlib", "libpng"):
            fn = getattr(_ic, f"{k}_version", None)
            if fn is not None:
                try:
                    v[f"lib{k}" if not k.startswith("lib") else k] = fn()
                except Exception:
                    pass
    return v
