"""Reading and writing the images selfcodec codes.

The codec works on 8-bit RGB.  :func:`load_image` turns whatever the user hands in
(a path, bytes, a file object, a PIL image or a numpy array) into an ``HxWx3`` uint8
array plus an :class:`ImageMeta` that records what is needed to give the image back
in its own form (grayscale, alpha channel).  It never drops information silently:

* grayscale (``1``, ``L``, ``LA``, 16-bit gray) is replicated to RGB and marked
  ``colour='L'`` so that it decodes back to a grayscale image;
* an alpha channel (RGBA, LA, PA, palette or RGB/L with a ``tRNS`` transparency key)
  is kept in ``meta.alpha`` (uint8 HxW) to be stored losslessly;
* palette images become RGB(A), which is lossless;
* 16-bit images are accepted only when every sample is a multiple of 257, i.e. exactly
  an 8-bit value; otherwise :class:`~selfcodec.errors.UnsupportedImageError` unless the
  caller passes ``allow_lossy_convert=True`` (then samples are rounded to 8 bits);
* CMYK, YCbCr, LAB, HSV, 32-bit integer and float images, and animations with more than
  one frame, need ``allow_lossy_convert=True`` as well;
* the declared size is checked against ``max_pixels`` (by default Pillow's decompression-bomb
  limit, as the decoder's: an error above twice ``PIL.Image.MAX_IMAGE_PIXELS``) and
  :data:`MAX_PIXELS` from the file header, before any pixel is decoded;
* the ICC profile, EXIF and XMP are kept in ``meta.metadata`` (see :mod:`selfcodec.metadata`);
* a file that is not an image, or is truncated or corrupt, raises
  ``UnsupportedImageError('cannot read <name>: <reason>')``.  Errors of the file system
  itself (missing file, permission denied) are left as the ``OSError`` they are.

EXIF orientation is applied (as every viewer does) unless ``apply_exif_orientation``
is false.  Numpy arrays are taken to be RGB(A), not OpenCV's BGR(A).
"""

from __future__ import annotations

import io
import os
import struct
import threading
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from . import metadata as MD
from .fileio import atomic_write
from .limits import PILLOW_LIMIT, resolve
from selfcodec.errors import NeedsLossyConvertError, UnsupportedImageError

__all__ = [
    "MAX_PIXELS",
    "ImageMeta",
    "load_image",
    "to_pil",
    "save_image",
    "image_to_bytes",
    "output_format",
    "is_lossless",
]

#: The largest image (width * height) selfcodec agrees to read.
MAX_PIXELS = 2**28

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO, Image.Image, np.ndarray]

_GRAY_16_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}
_LOSSY_MODES = {"CMYK", "YCbCr", "LAB", "HSV", "F", "RGBa", "La", "I;16S", "I;32", "I;32B", "I;32L"}

_pil_limit_lock = threading.Lock()


@dataclass
class ImageMeta:
    """What :func:`load_image` learnt about the source image.

    ``colour`` is ``'L'`` for grayscale sources (with or without alpha), ``'RGBA'`` for
    colour sources with alpha and ``'RGB'`` otherwise; ``alpha`` (uint8, HxW) is not None
    exactly when the source had an alpha channel.  ``source_mode`` and ``bit_depth``
    describe the input as read (informational only); ``lossy`` is true when
    ``allow_lossy_convert`` had to change pixel values.
    """

    colour: str = "RGB"
    alpha: np.ndarray | None = None
    source_mode: str = ""
    bit_depth: int = 8
    lossy: bool = False
    mode: str = ""  # set by the decoder: the coding mode of the image it decoded (a cut file's may be lower)
    metadata: dict = field(default_factory=dict)  # ICC profile, EXIF, XMP by kind (selfcodec.metadata)

    def __post_init__(self) -> None:
        if self.colour not in ("L", "RGB", "RGBA"):
            raise ValueError(f"colour must be 'L', 'RGB' or 'RGBA', not {self.colour!r}")

    @property
    def has_alpha(self) -> bool:
        return self.alpha is not None

    @property
    def pil_mode(self) -> str:
        """The PIL mode :func:`to_pil` gives back: 'L', 'LA', 'RGB' or 'RGBA'."""
        if self.colour == "L":
            return "LA" if self.alpha is not None else "L"
        return "RGBA" if self.alpha is not None else "RGB"


# --------------------------------------------------------------------------- loading


def load_image(
    src: ImageSource,
    *,
    allow_lossy_convert: bool = False,
    apply_exif_orientation: bool = True,
    max_pixels=PILLOW_LIMIT,
) -> tuple[np.ndarray, ImageMeta]:
    """Read ``src`` into ``(rgb, meta)``: ``rgb`` is a C-contiguous uint8 HxWx3 array.

    ``src`` is a path, bytes-like object, binary file object, ``PIL.Image.Image`` or a
    numpy array (HxW, HxWx1, HxWx3 or HxWx4, uint8 or uint16, RGB order).
    Raises :class:`UnsupportedImageError` for what cannot be coded faithfully (see the
    module docstring); ``OSError`` only for file-system errors on a path. max_pixels: refuse
    an image of more pixels (an int, None: no limit but MAX_PIXELS, or PILLOW_LIMIT).
    """
    limit = resolve(max_pixels)  # before _open_checked lifts Pillow's own limit for a moment
    if isinstance(src, np.ndarray):
        _check_limit(src.shape[1::-1] if src.ndim >= 2 else (0, 0), "<array>", limit, max_pixels)
        return _from_array(src, "<array>", allow_lossy_convert, source_mode=f"array {src.dtype}")
    if isinstance(src, Image.Image):
        name = str(getattr(src, "filename", "") or "<PIL image>")
        _check_limit(src.size, name, limit, max_pixels)
        return _from_pil(src, name, None, allow_lossy_convert, apply_exif_orientation)
    read = lambda fp, name, get_bytes: _open_and_read(  # noqa: E731
        fp, name, get_bytes, allow_lossy_convert, apply_exif_orientation, (limit, max_pixels))
    if isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
        return read(io.BytesIO(data), "<bytes>", lambda: data)
    if isinstance(src, (str, os.PathLike)):
        path = Path(src)
        with open(path, "rb") as f:  # OSError (missing, permission, directory) propagates
            return read(f, str(path), path.read_bytes)
    if hasattr(src, "read"):
        name = str(getattr(src, "name", "<stream>"))
        data = src.read()
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError("load_image needs a binary file object")
        data = bytes(data)
        return read(io.BytesIO(data), name, lambda: data)
    raise TypeError(f"load_image cannot read a {type(src).__name__}")


def _open_and_read(fp, name, get_bytes, lossy, exif, limit):
    img = _open_checked(fp, name)
    try:
        _check_limit(img.size, name, *limit)  # from the header, before any pixel is decoded
        return _from_pil(img, name, get_bytes, lossy, exif)
    finally:
        img.close()


def _check_limit(size, name: str, limit: int | None, asked) -> None:
    """UnsupportedImageError if the image has more pixels than the caller's max_pixels allows."""
    n = int(size[0]) * int(size[1])
    if limit is not None and n > limit:
        why = " (twice PIL.Image.MAX_IMAGE_PIXELS, Pillow's decompression-bomb guard)" if asked == PILLOW_LIMIT else ""
        raise UnsupportedImageError(
            f"{name}: image is {size[0]}x{size[1]} = {n:,} pixels, above the limit of {limit:,}{why}; to encode it "
            f"pass max_pixels={n} or None (command line: --max-pixels {n}, or 0 for no limit)")


def _open_checked(fp, name: str) -> Image.Image:
    """``Image.open`` (lazy: reads only the header) with our own pixel limit."""
    with _pil_limit_lock, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        old = Image.MAX_IMAGE_PIXELS
        # Pillow refuses at 2 * MAX_IMAGE_PIXELS; raise its bar to at least our own limit
        # so that ours decide (max_pixels, by default Pillow's own, then MAX_PIXELS) and
        # say how to raise them.
        if old is not None and old < MAX_PIXELS:
            Image.MAX_IMAGE_PIXELS = MAX_PIXELS
        try:
            img = Image.open(fp)
        except Image.DecompressionBombError as e:
            raise UnsupportedImageError(f"cannot read {name}: image too large ({e})") from None
        except UnidentifiedImageError:
            raise UnsupportedImageError(f"cannot read {name}: not an image file or unknown format") from None
        except (SyntaxError, ValueError, EOFError, struct.error, zlib.error) as e:
            raise UnsupportedImageError(f"cannot read {name}: {_reason(e)}") from None
        except OSError as e:
            if isinstance(e, (FileNotFoundError, PermissionError, IsADirectoryError)):
                raise
            raise UnsupportedImageError(f"cannot read {name}: {_reason(e)}") from None
        finally:
            Image.MAX_IMAGE_PIXELS = old
    _check_size(img.size, name)
    return img


def _reason(e: BaseException) -> str:
    msg = str(e).strip()
    return msg or type(e).__name__


def _check_size(size: tuple[int, int], name: str) -> None:
    w, h = size
    if w <= 0 or h <= 0:
        raise UnsupportedImageError(f"cannot read {name}: empty image ({w}x{h})")
    if w * h > MAX_PIXELS:
        raise UnsupportedImageError(
            f"{name}: image is {w}x{h} = {w * h} pixels, more than the limit of {MAX_PIXELS} pixels"
        )


def _raw_mode(img: Image.Image) -> str:
    tile = getattr(img, "tile", None) or []
    if not tile:
        return ""
    args = tile[0][3] if len(tile[0]) > 3 else None
    if isinstance(args, tuple):
        args = args[0] if args else None
    return args if isinstance(args, str) else ""


def _from_pil(img: Image.Image, name: str, get_bytes, lossy: bool, exif: bool):
    rgb, meta = _pixels_from_pil(img, name, get_bytes, lossy, exif)  # first: PNG's getexif() loads the pixels
    meta.metadata = MD.read(img, oriented=exif and MD.orientation(img) != 1)
    return rgb, meta


def _pixels_from_pil(img: Image.Image, name: str, get_bytes, lossy: bool, exif: bool):
    _check_size(img.size, name)
    n_frames = getattr(img, "n_frames", 1) or 1
    if n_frames > 1 and not lossy:
        raise NeedsLossyConvertError(f"{name}: has {n_frames} frames; only still images can be coded",
                                     "extract a frame first (the lossy conversion codes the first frame)")
    source_mode = img.mode
    raw = _raw_mode(img)
    sixteen = ";16" in raw and img.mode in ("RGB", "RGBA", "LA")
    try:
        if sixteen:
            # Pillow reduces 16-bit colour to 8 bits silently when it loads; read the
            # original samples with OpenCV so that we can tell if that is exact.
            arr = _read_16bit_colour(img, name, get_bytes)
            if arr is None:
                if not lossy:
                    raise NeedsLossyConvertError(
                        f"{name}: is a 16-bit {img.mode} image whose samples cannot be checked"
                    )
            else:
                if exif:
                    arr = _exif_transpose_array(img, arr)
                if img.mode == "LA" and arr.ndim == 3 and arr.shape[2] == 4:
                    arr = np.ascontiguousarray(arr[..., [0, 3]])
                    rgb, meta = _from_array(arr[..., 0], name, lossy, source_mode=source_mode, bits=16)
                    a, alpha_lossy = _to_uint8(arr[..., 1], name, lossy, "alpha")
                    meta.alpha = a
                    meta.lossy = meta.lossy or alpha_lossy
                    return rgb, meta
                return _from_array(arr, name, lossy, source_mode=source_mode, bits=16)
        img.load()
        if exif:
            img = ImageOps.exif_transpose(img)
    except UnsupportedImageError:
        raise
    except Image.DecompressionBombError as e:
        raise UnsupportedImageError(f"cannot read {name}: image too large ({e})") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error) as e:
        raise UnsupportedImageError(f"cannot read {name}: {_reason(e)}") from None

    mode = img.mode
    has_trns = "transparency" in img.info
    if mode == "1":
        return _pack(np.asarray(img.convert("L")), None, "L", source_mode)
    if mode == "L":
        if has_trns:
            la = np.asarray(img.convert("LA"))
            return _pack(la[..., 0], la[..., 1], "L", source_mode)
        return _pack(np.asarray(img), None, "L", source_mode)
    if mode == "LA":
        la = np.asarray(img)
        return _pack(la[..., 0], la[..., 1], "L", source_mode)
    if mode in ("P", "PA"):
        if mode == "PA" or has_trns or img.palette is not None and img.palette.mode == "RGBA":
            rgba = np.asarray(img.convert("RGBA"))
            return _pack(rgba[..., :3], rgba[..., 3], "RGBA", source_mode)
        return _pack(np.asarray(img.convert("RGB")), None, "RGB", source_mode)
    if mode in ("RGB", "RGBX"):
        if has_trns and mode == "RGB":
            rgba = np.asarray(img.convert("RGBA"))
            return _pack(rgba[..., :3], rgba[..., 3], "RGBA", source_mode)
        return _pack(np.asarray(img.convert("RGB")), None, "RGB", source_mode)
    if mode == "RGBA":
        rgba = np.asarray(img)
        return _pack(rgba[..., :3], rgba[..., 3], "RGBA", source_mode)
    if mode in _GRAY_16_MODES:
        arr = np.asarray(img)
        bits = 16 if mode != "I" or raw.startswith("I;16") else 32
        return _from_array(arr, name, lossy, source_mode=source_mode, bits=bits)
    # CMYK, YCbCr, LAB, HSV, F, I;32 ...: only with an explicit permission to lose data.
    if not lossy:
        raise NeedsLossyConvertError(
            f"{name}: {mode} images cannot be coded without a lossy conversion to RGB"
        )
    if mode == "F":
        target = "L"
    elif mode in ("La",):
        target = "LA"
    elif mode in ("RGBa",):
        target = "RGBA"
    else:
        target = "RGB"
    conv = np.asarray(img.convert(target))
    if target == "L":
        rgb, meta = _pack(conv, None, "L", source_mode)
    elif target == "LA":
        rgb, meta = _pack(conv[..., 0], conv[..., 1], "L", source_mode)
    elif target == "RGBA":
        rgb, meta = _pack(conv[..., :3], conv[..., 3], "RGBA", source_mode)
    else:
        rgb, meta = _pack(conv, None, "RGB", source_mode)
    meta.lossy = True
    return rgb, meta


def _read_16bit_colour(img: Image.Image, name: str, get_bytes) -> np.ndarray | None:
    """The samples of a 16-bit RGB/RGBA/LA file as uint16 RGB(A) (None if unavailable)."""
    data = None
    if get_bytes is not None:
        data = get_bytes()
    elif getattr(img, "filename", ""):
        try:
            data = Path(img.filename).read_bytes()
        except OSError:
            data = None
    if data is None:
        return None
    try:
        import cv2
    except ImportError:
        return None
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise UnsupportedImageError(f"cannot read {name}: 16-bit image could not be decoded")
    if arr.shape[:2] != (img.size[1], img.size[0]):
        return None
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = arr[..., ::-1]
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[..., [2, 1, 0, 3]]
    return np.ascontiguousarray(arr)


def _exif_transpose_array(img: Image.Image, arr: np.ndarray) -> np.ndarray:
    try:
        orientation = img.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - broken EXIF: ignore it like viewers do
        return arr
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: np.swapaxes(a, 0, 1),
        6: lambda a: np.swapaxes(a, 0, 1)[:, ::-1],
        7: lambda a: np.swapaxes(a, 0, 1)[::-1, ::-1],
        8: lambda a: np.swapaxes(a, 0, 1)[::-1],
    }
    op = ops.get(orientation)
    return np.ascontiguousarray(op(arr)) if op else arr


def _to_uint8(a: np.ndarray, name: str, lossy: bool, what: str = "samples") -> tuple[np.ndarray, bool]:
    """uint8 version of integer samples; (array, whether values were changed)."""
    if a.dtype == np.uint8:
        return a, False
    if a.dtype == np.bool_:
        return (a.astype(np.uint8) * 255), False
    if a.dtype.kind in "iu":
        wide = a.astype(np.int64, copy=False)
        lo, hi = (int(wide.min()), int(wide.max())) if wide.size else (0, 0)
        if lo >= 0 and hi <= 65535:
            exact = not np.any(wide % 257)
            if exact:
                return (wide // 257).astype(np.uint8), False
            if not lossy:
                raise NeedsLossyConvertError(
                    f"{name}: 16-bit {what} are not exactly representable in 8 bits "
                    f"(not every value is a multiple of 257)"
                )
            return np.clip(np.rint(wide / 257.0), 0, 255).astype(np.uint8), True
        if not lossy:
            raise NeedsLossyConvertError(
                f"{name}: integer {what} outside the 16-bit range ({lo}..{hi})"
            )
        return np.clip(wide, 0, 255).astype(np.uint8), True
    if not lossy:
        raise NeedsLossyConvertError(f"{name}: {a.dtype} {what} are not supported (need uint8 or uint16)")
    if a.dtype.kind == "f":
        f = np.nan_to_num(a.astype(np.float64), nan=0.0)
        if f.size and f.max() <= 1.0 and f.min() >= 0.0:
            f = f * 255.0
        return np.clip(np.rint(f), 0, 255).astype(np.uint8), True
    raise UnsupportedImageError(f"{name}: {a.dtype} {what} are not supported")


def _from_array(a: np.ndarray, name: str, lossy: bool, *, source_mode: str = "", bits: int | None = None):
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise UnsupportedImageError(f"{name}: array of shape {a.shape} is not an image (need HxW, HxWx1, HxWx3 or HxWx4)")
    _check_size((a.shape[1], a.shape[0]), name)
    if bits is None:
        bits = a.dtype.itemsize * 8
    u8, changed = _to_uint8(a, name, lossy)
    if u8.ndim == 2:
        rgb, meta = _pack(u8, None, "L", source_mode)
    elif u8.shape[2] == 3:
        rgb, meta = _pack(u8, None, "RGB", source_mode)
    else:
        rgb, meta = _pack(u8[..., :3], u8[..., 3], "RGBA", source_mode)
    meta.bit_depth = bits
    meta.lossy = changed
    return rgb, meta


def _pack(colour: np.ndarray, alpha: np.ndarray | None, kind: str, source_mode: str):
    if kind == "L":
        rgb = np.repeat(np.asarray(colour, np.uint8)[..., None], 3, axis=2)
    else:
        rgb = np.ascontiguousarray(np.asarray(colour, np.uint8)[..., :3])
    if alpha is not None:
        alpha = np.ascontiguousarray(alpha, dtype=np.uint8)
        if kind == "RGB":
            kind = "RGBA"
    elif kind == "RGBA":
        kind = "RGB"
    return rgb, ImageMeta(colour=kind, alpha=alpha, source_mode=source_mode, bit_depth=8)


# --------------------------------------------------------------------------- writing


def to_pil(rgb: np.ndarray, meta: ImageMeta | None = None) -> Image.Image:
    """The image ``load_image`` read, back as a PIL image of mode ``meta.pil_mode``.

    ``rgb`` is uint8 HxWx3 (or HxW for grayscale).  For ``colour='L'`` the three channels
    are averaged (a lossy decoder may not return them exactly equal).
    """
    a = np.asarray(rgb)
    if a.dtype != np.uint8:
        raise ValueError(f"to_pil needs uint8 pixels, not {a.dtype}")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] != 3):
        raise ValueError(f"to_pil needs an HxWx3 (or HxW) array, not shape {a.shape}")
    colour = meta.colour if meta is not None else ("L" if a.ndim == 2 else "RGB")
    alpha = meta.alpha if meta is not None else None
    if colour == "L":
        if a.ndim == 3:
            s = a.astype(np.uint16).sum(axis=2)
            g = ((s + 1) // 3).astype(np.uint8)
        else:
            g = a
        out, mode = g, "L"
    else:
        out = a if a.ndim == 3 else np.repeat(a[..., None], 3, axis=2)
        mode = "RGB"
    if alpha is not None:
        alpha = np.asarray(alpha, dtype=np.uint8)
        if alpha.shape != out.shape[:2]:
            raise ValueError(f"alpha of shape {alpha.shape} does not match image of shape {out.shape[:2]}")
        out = np.dstack([out, alpha])
        mode = "LA" if mode == "L" else "RGBA"
    img = Image.fromarray(np.ascontiguousarray(out), mode=mode)
    return MD.attach(img, meta.metadata) if meta is not None else img


# Options of the formats the decoder writes exactly (WebP in its lossless mode) ...
_LOSSLESS = {
    "PNG": {"compress_level": 3},  # zlib level 3: 3x faster than Pillow's 6 for files about 4 % larger
    "TIFF": {"compression": "tiff_deflate"},
    "WEBP": {"lossless": True, "quality": 100, "method": 4, "exact": True},
    "BMP": {},
    "PPM": {},
    "TGA": {},
    "QOI": {},
    "SGI": {},
    "JPEG2000": {},  # Pillow writes it reversibly (lossless) unless asked otherwise
}
# ... and of those that lose something, at their best (any other format Pillow writes: its defaults).
_LOSSY = {
    "JPEG": {"quality": 95, "subsampling": 0},
    "AVIF": {"quality": 95},
}


def output_format(path: str | os.PathLike) -> str | None:
    """The Pillow format written for ``path``'s suffix (None if Pillow writes no such format;
    .svae is not an image output: that is the encoder's job)."""
    Image.init()
    fmt = Image.registered_extensions().get(Path(path).suffix.lower())
    return fmt if fmt in Image.SAVE and fmt != "SVAE" else None


def is_lossless(fmt: str) -> bool:
    """Whether :func:`image_to_bytes` keeps every pixel in format ``fmt`` (mode permitting)."""
    return fmt.upper() in _LOSSLESS


def _as_pil(img_or_array: Any) -> Image.Image:
    if isinstance(img_or_array, Image.Image):
        return img_or_array
    a = np.asarray(img_or_array)
    if a.dtype != np.uint8:
        raise ValueError(f"save_image needs uint8 pixels, not {a.dtype}")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        return Image.fromarray(a, "L")
    if a.ndim == 3 and a.shape[2] in (3, 4):
        return Image.fromarray(np.ascontiguousarray(a), "RGB" if a.shape[2] == 3 else "RGBA")
    raise ValueError(f"save_image needs an HxW, HxWx3 or HxWx4 array, not shape {a.shape}")


def image_to_bytes(img_or_array: Any, fmt: str = "PNG") -> bytes:
    """Encode a PIL image or uint8 array (PNG by default, exactly; see is_lossless for the
    others) into bytes, with the ICC profile, EXIF and XMP in its ``info`` where the format
    holds them (selfcodec.metadata)."""
    img = _as_pil(img_or_array)
    fmt = fmt.upper()
    opts = {**_LOSSLESS.get(fmt, _LOSSY.get(fmt, {})), **MD.save_options(fmt, MD.of(img))}
    if fmt == "PPM" and img.mode in ("LA", "RGBA"):
        raise UnsupportedImageError(f"{fmt} cannot store an alpha channel; write PNG instead")
    bio = io.BytesIO()
    try:
        img.save(bio, format=fmt, **opts)
    except (OSError, ValueError, KeyError, TypeError) as e:  # e.g. JPEG and an alpha channel
        raise UnsupportedImageError(f"cannot write a {img.mode} image as {fmt}: {_reason(e)}; write PNG instead") from None
    return bio.getvalue()


def save_image(img_or_array: Any, path: str | os.PathLike) -> None:
    """Write a PIL image or uint8 array (HxW, HxWx3, HxWx4) to ``path`` as PNG.

    The file is written atomically (temporary file in the same directory, fsync,
    rename): ``path`` holds either its old content or the whole new image.
    """
    atomic_write(path, image_to_bytes(img_or_array, "PNG"))


