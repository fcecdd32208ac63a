"""selfcodec: a learned image codec built on self-supervised VAEs (selfVAE).

    import selfcodec
    data = selfcodec.encode("photo.png", mode="rec2", level=3)   # -> .svae bytes
    img = selfcodec.decode(data)                                # -> PIL image (L, RGB or RGBA)
    selfcodec.info(data)                                        # -> dict: model, mode, size, streams ...

These are thin front ends of :mod:`selfcodec.api` (which has the full set of options);
``import selfcodec`` itself loads neither torch nor a model: that happens when coding starts.
``import selfcodec.pillow`` lets Pillow open and save ``.svae`` files.
"""

__version__ = "0.1.0"
__all__ = ["encode", "decode", "info", "__version__"]


def _api():
    import importlib

    return importlib.import_module("selfcodec.api")


def _read(data):
    if isinstance(data, str) or hasattr(data, "__fspath__"):
        with open(data, "rb") as f:
            return f.read()
    if hasattr(data, "read"):
        return data.read()
    return data


def encode(image, mode: str = "rec2", level=None, model=None, **options) -> bytes:
    """Compress an image into the bytes of a .svae file.

    image: a path, encoded image bytes, a file object, a PIL image or a uint8/uint16 numpy
    array (RGB(A), L). mode: "rec1", "rec2" (default), "cgen", "crec" or "lossless".
    level: quality, 1 gives the smallest files, higher is better (``selfcodec.api.LEVELS``;
    default 3; fractions such as 3.5 lie between two levels); or instead quality=0..100,
    target_size=BYTES or target_psnr=DB (see :func:`selfcodec.api.encode_report`). model: a shipped model's name or a .safetensors path (default: the mode's
    default model). Further options (verify, tile, allow_lossy_convert, search, strip: leave out
    the ICC profile, EXIF and XMP, max_pixels: the largest image accepted) are those of
    :func:`selfcodec.api.encode`.
    Raises a :class:`selfcodec.errors.CodecError` subclass on bad input.
    """
    return _api().encode(image, mode=mode, level=level, model=model, **options)


def decode(data, model=None, as_array: bool = False, max_pixels="pillow", **options):
    """Decode .svae bytes (or a .svae file: path or binary file object) into an image.

    Returns a PIL image of the mode the input had (L, RGB or RGBA), or with as_array a uint8
    numpy array. model: the weights to decode with (default: the model the file names).
    max_pixels: refuse a file that declares more pixels, before any network runs
    (:class:`selfcodec.errors.TooManyPixelsError`, a FormatError); the default "pillow" is twice
    ``PIL.Image.MAX_IMAGE_PIXELS`` as set when called (Pillow's decompression-bomb error), None
    means no limit. options: partial=True (a cut layered file), device="cuda" (x̂'s synthesis on
    a GPU); see :func:`selfcodec.api.decode`.
    """
    return _api().decode(_read(data), model=model, as_array=as_array, max_pixels=max_pixels, **options)


def info(data) -> dict:
    """What .svae bytes (or a .svae file: path or file object) hold, from the header and stream table.

    Returns a dict: model, model_hash, mode, level, width, height, colour, tiles, bytes,
    header_bytes, bpp, streams (bytes per stream), pixel_crc32 and crc_of (what it guards: the pixels, or a
    lossy file's coded integers), format_version, coder_version, and metadata (bytes per kind)
    for a file that carries some. Runs no network, loads no weights and does not import torch
    (the same as :func:`selfcodec.api.info`).
    """
    from .codec.fileinfo import info as file_info

    return file_info(_read(data))
