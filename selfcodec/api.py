"""The Python API: `encode(image, mode, level, model) -> bytes`, `decode(data) -> image`,
`info(data)` and `truncate(data, mode)`; the file itself is made and read in codec/files.py.
"""

import warnings

import numpy as np

from . import zoo
from .codec import layered as LY
from .codec import modes as M
from .codec import plans as P
from .codec import targets as T
from .codec.fileinfo import info  # noqa: F401 - part of the API (torch-free, so it lives apart)
from .codec.files import MAX_TILE, TILE, decode_rgb, encode_image  # noqa: F401 - decode_rgb: part of the API
from .errors import CodecError, TargetMissedWarning
from .imageio import load_image, to_pil
from .limits import PILLOW_LIMIT

MODES = ["rec1", "rec2", "cgen", "crec", "lossless"]
LEVELS = sorted(M.LEVELS)
DEFAULT_LEVEL = M.DEFAULT_LEVEL


def encode_report(image, mode: str = "rec2", level=None, model=None, tile: int = TILE,
                  allow_lossy_convert: bool = False, search: int = 0, layered: bool | None = None,
                  strip: bool = False, max_pixels=PILLOW_LIMIT, metadata: dict | None = None, quality=None,
                  target_size: int | None = None, target_psnr: float | None = None, stored_fallback: bool = True,
                  reconstruct: bool = True) -> dict:
    """Encode and return everything the encoder knows: the file bytes, the reconstruction it
    predicts ("recon"; reconstruct=False: None where writing the file does not need it, about
    half the work of rec1 and rec2), the model's estimate of every stream's bits and the real
    stream sizes.
    search: steps of the encoder-side latent search per tile (rec2 with a rate-distortion
    model; see codec/search.py): slower encoding, fewer bits for the same quality, and files
    any decoder of the model reads. layered (lossless only, the default there): store û, ẑ,
    y and x as layers whose prefixes are the crec, rec2 and rec1 files of `level` (see
    truncate); layered=False writes the earlier one-chain lossless file. The source's ICC
    profile, EXIF and XMP are stored in the file unless strip; metadata: entries that replace
    the source's (icc_profile, exif, xmp -> bytes; b"" drops one). max_pixels: refuse a larger image
    (UnsupportedImageError), by default above twice PIL.Image.MAX_IMAGE_PIXELS; None: no limit.
    stored_fallback (lossless): where the pixels stored as a PNG (or raw) make a smaller file than
    the model's coding (tiny images, graphics), store them instead, as the smallest of raw, PNG and
    lossless WebP (codec/stored.py); False: always the model's file.

    How good, one of (none: level DEFAULT_LEVEL): level, 1 to 7 or a fraction between (3.5; on a
    1/256 grid); quality, 0 to 100 over the model's levels (plans.level_for_quality: 0 is level 1,
    100 its highest); target_size, the largest file of at most that many bytes; target_psnr, the
    smallest file of at least that PSNR in dB (over RGB). A target is searched with up to
    targets.MAX_PROBES encodes; one that no level meets gives the closest file and a
    TargetMissedWarning. The report's "level" is the level used, "aim" the search (targets.Aim)."""
    level = _check_quality_options(mode, level, quality, target_size, target_psnr)
    layered = (mode == "lossless") if layered is None else layered
    if layered and mode != "lossless":
        raise CodecError("only lossless files are written in layers; cut one down with truncate()")
    if search < 0:
        raise CodecError(f"search steps must be 0 or more, not {search}")
    if tile > MAX_TILE:
        raise CodecError(f"tile side {tile} is larger than the limit of {MAX_TILE} pixels")
    rgb, meta = load_image(image, allow_lossy_convert=allow_lossy_convert, max_pixels=max_pixels)

    reconstruct = reconstruct or target_size is not None or target_psnr is not None  # (targets.aim reads each probe's)

    def at(lvl) -> dict:
        return {**encode_image(rgb, meta, mode, lvl, model, tile, search, layered, strip, metadata, stored_fallback,
                               reconstruct), "level": lvl}

    if quality is None and target_size is None and target_psnr is None:
        return at(level)
    top = _level_count(model, mode)
    if quality is not None:
        return at(P.level_for_quality(quality, top))
    found = T.aim(at, rgb, top, target_size, target_psnr)
    if not found.met:
        warnings.warn(found.message, TargetMissedWarning, stacklevel=2)
    return {**found.best.report, "aim": found}


def _check_quality_options(mode: str, level, quality, target_size, target_psnr):
    """The level to code at (None when quality or a target decides it); CodecError for values out
    of range or more than one way of choosing it (all checked before any model loads)."""
    chosen = [k for k, v in dict(level=level, quality=quality, target_size=target_size,
                                 target_psnr=target_psnr).items() if v is not None]
    if len(chosen) > 1:
        raise CodecError(f"give one of level, quality, target_size and target_psnr, not {' and '.join(chosen)}")
    if quality is not None:
        P.check_quality(quality)
    P.check_target(target_size, target_psnr)
    if (target_size is not None or target_psnr is not None) and mode == "lossless":
        raise CodecError("a lossless file's size is the image's: aim at a size or PSNR with a lossy mode (rec2)")
    if chosen and level is None:
        return None  # quality or the target decides
    return P.as_level(DEFAULT_LEVEL if level is None else level)


def _level_count(model, mode: str) -> int:
    """The levels of the model that codes `mode` (zoo.load keeps it loaded for the encode)."""
    return M.level_count(zoo.load(model if model is not None else zoo.default_for(mode))[0])


def encode(image, mode: str = "rec2", level=None, model=None, verify: bool = False,
           tile: int = TILE, allow_lossy_convert: bool = False, search: int = 0, layered: bool | None = None,
           strip: bool = False, max_pixels=PILLOW_LIMIT, metadata: dict | None = None, quality=None,
           target_size: int | None = None, target_psnr: float | None = None, stored_fallback: bool = True) -> bytes:
    """Compress an image (path, bytes, PIL image or uint8/uint16 array) into .svae bytes.
    With verify, decode the result and check it reproduces the predicted pixels; with search,
    spend `search` gradient steps per tile finding cheaper latents (rec2, see encode_report);
    a lossless file is layered unless layered=False (see truncate). strip: leave out the ICC
    profile, EXIF and XMP; metadata: entries that replace the source's; max_pixels: the largest
    image accepted (see encode_report). How good: one of level (default 3; 3.5 lies between 3
    and 4), quality (0-100), target_size (bytes) and target_psnr (dB), see encode_report;
    stored_fallback: see encode_report."""
    rep = encode_report(image, mode, level, model, tile, allow_lossy_convert, search, layered, strip, max_pixels,
                        metadata, quality, target_size, target_psnr, stored_fallback, reconstruct=False)
    if verify:
        decode(rep["data"], model=model, as_array=True)  # raises ChecksumError on any mismatch
    return rep["data"]


def truncate(data: bytes, mode: str) -> bytes:
    """Cut a layered (lossless) file down to the file of a lower mode (crec, rec2 or rec1) by
    dropping layers and rewriting the header: no model runs, in milliseconds."""
    return LY.truncate(data, mode)


def decode(data: bytes, model=None, as_array: bool = False, max_pixels=PILLOW_LIMIT, partial: bool = False,
           device="cpu"):
    """.svae bytes -> PIL image (mode L, RGB or RGBA as the input was), or a uint8 array.
    max_pixels: refuse (TooManyPixelsError, a FormatError) a file that declares more pixels, before
    any model is loaded; by default twice PIL.Image.MAX_IMAGE_PIXELS as set at call time, None: no limit.
    partial: a layered file cut anywhere after its first layer decodes to the image of its last
    complete layer (decode_rgb's ImageMeta.mode says which); without it a cut file is an error.
    device: where the synthesis of x̂ runs ("cuda" for a GPU); the probability path stays on the
    CPU in exact integers, so the file decodes the same either way (a CodecError if there is no such device)."""
    rgb, meta = decode_rgb(data, model, max_pixels, partial, device)
    img = to_pil(rgb, meta)
    return np.asarray(img) if as_array else img
