"""How many pixels the decoder accepts from a .svae file.

A file of a few hundred bytes may declare up to 2^28 pixels (805 MB of output), and the
decoder's time grows with that count, so ``decode`` refuses a file that declares more than
``max_pixels``: by default twice Pillow's decompression-bomb limit
(``PIL.Image.MAX_IMAGE_PIXELS``, read at call time; Pillow's ``Image.open`` raises
``DecompressionBombError`` above that), ``None`` for no limit.

Torch-free (only the container and, for the default, ``PIL.Image``), so the command line
and the Pillow plugin check a file before the codec is imported.
"""

from __future__ import annotations

from .errors import CodecError, TooManyPixelsError

#: ``max_pixels`` default: follow Pillow's ``Image.MAX_IMAGE_PIXELS`` (an error above twice it).
PILLOW_LIMIT = "pillow"


def default_max_pixels() -> int | None:
    """Twice ``PIL.Image.MAX_IMAGE_PIXELS`` as it is set now; None where Pillow's guard is off."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    return None if limit is None else 2 * int(limit)


def resolve(max_pixels=PILLOW_LIMIT) -> int | None:
    """The limit ``max_pixels`` stands for: an int >= 0, None (no limit) or PILLOW_LIMIT."""
    if isinstance(max_pixels, str) and max_pixels == PILLOW_LIMIT:
        return default_max_pixels()
    if max_pixels is None:
        return None
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 0:
        raise CodecError(f"max_pixels must be a number of pixels >= 0, None (no limit) or {PILLOW_LIMIT!r}, "
                         f"not {max_pixels!r}")
    return max_pixels


def check_pixels(header, max_pixels=PILLOW_LIMIT) -> None:
    """TooManyPixelsError (a FormatError) if the container header declares more pixels than allowed."""
    limit = resolve(max_pixels)
    n = header.width * header.height
    if limit is not None and n > limit:
        why = " (twice PIL.Image.MAX_IMAGE_PIXELS)" if isinstance(max_pixels, str) else ""
        raise TooManyPixelsError(
            f"the file declares {header.width}x{header.height} = {n:,} pixels, above the limit of {limit:,}{why}; "
            f"to decode it pass max_pixels={n} or None (command line: --max-pixels {n}, or 0 for no limit)")
