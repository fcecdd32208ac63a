"""A Pillow plugin for .svae files: ``import selfcodec.pillow`` and Pillow reads and writes them.

    from PIL import Image
    import selfcodec.pillow

    im = Image.open("photo.svae")    # size and mode (L, RGB, RGBA) from the header; no network runs
    im.load()                        # decodes (also implied by any use of the pixels)
    im.save("copy.svae", mode="rec2", level=3)

Registers the format ``SVAE``, the extension ``.svae`` and the MIME type ``image/x-svae``.

Save options (keyword arguments of ``Image.save``), defaults as the command line's:

``mode``
    coding mode: ``rec1``, ``rec2`` (default), ``cgen``, ``crec`` or ``lossless``.
``level``
    quality level, ``selfcodec.api.LEVELS`` or a fraction between two (default
    ``selfcodec.api.DEFAULT_LEVEL``, 3).
``quality``
    0-100 as for Pillow's JPEG and WebP writers, mapped onto the model's levels (0: level 1, 100:
    its highest; ``selfcodec.codec.plans.level_for_quality``); give it or ``level``, not both.
``model``
    model name or ``.safetensors`` path (default: the mode's default model).
``search``
    encoder-side latent search steps per tile (rec2; default 0).
``strip``
    leave out the ICC profile, EXIF and XMP (default: kept, as the image's ``info`` holds them).
``icc_profile``, ``exif``, ``xmp``
    bytes stored instead of the image's own (``b""``: none), as Pillow's other writers take them.

The file's metadata is in ``im.info`` (``icc_profile``, ``exif``, ``xmp``) from ``Image.open``
on, so ``im.getexif()`` reads it, and saving the decoded image as PNG, TIFF, WebP or JPEG keeps it.

Decoding uses the model the file names, or the one given by :func:`register`
(``register(model="my.safetensors")``).

Size limit: ``Image.open`` applies Pillow's decompression-bomb check to the size declared in
the header (``DecompressionBombWarning`` above ``Image.MAX_IMAGE_PIXELS``,
``DecompressionBombError`` above twice it; set ``Image.MAX_IMAGE_PIXELS = None`` to lift it),
and decoding honours the same setting.

A damaged header makes ``Image.open`` fail as for any unreadable image
(``PIL.UnidentifiedImageError``), one whose colour type and alpha section disagree with a
:class:`selfcodec.errors.FormatError`; errors found while decoding (damaged streams, other model
weights) are raised by ``load()`` as :class:`selfcodec.errors.CodecError` subclasses.
"""

from __future__ import annotations

from PIL import Image, ImageFile

from . import metadata as MD
from .codec import container as C
from .errors import CodecError, FormatError

FORMAT = "SVAE"
EXTENSION = ".svae"
MIME = "image/x-svae"
_HEAD = 4096  # bytes read first to parse the header (more are read when its stream table is longer)
_options: dict = {"model": None}


def _accept(prefix: bytes) -> bool:
    return prefix[:4] == C.MAGIC


def _read_header(fp) -> tuple[C.Header, str]:
    """(the header, the image's PIL mode) from the file's start, reading only as far as it needs."""
    data = fp.read(_HEAD)
    while True:
        try:
            header = C.peek_header(data)
            break
        except FormatError as e:
            more = fp.read(len(data))  # the stream length table runs on: read (double) and retry
            if not more:
                raise SyntaxError(f"not a valid .svae file: {e}") from None
            data += more
    return header, C.peek_image_mode(data)  # a FormatError where colour and alpha disagree


class SvaeImageFile(ImageFile.ImageFile):
    """An image of a .svae file: the header is read on open, the pixels decoded on load."""

    format = FORMAT
    format_description = "selfcodec learned image codec"

    def _open(self) -> None:
        header, self._mode = _read_header(self.fp)
        self._size = (header.width, header.height)
        MD.attach(self, header.metadata)
        tile = getattr(ImageFile, "_Tile", None)
        extents = (0, 0) + self.size
        self.tile = [tile(FORMAT, extents, 0, None) if tile else (FORMAT, extents, 0, None)]


class SvaeDecoder(ImageFile.PyDecoder):
    """Reads the whole file and decodes it with :func:`selfcodec.api.decode`."""

    _pulls_fd = True

    def decode(self, buffer):
        from . import api

        img = api.decode(self.fd.read(), model=_options["model"])  # max_pixels: Pillow's setting
        if img.mode != self.mode or img.size != (self.state.xsize, self.state.ysize):
            raise FormatError(f"corrupt file: decoded a {img.mode} {img.size} image for a {self.mode} "
                              f"{(self.state.xsize, self.state.ysize)} header")
        self.set_as_raw(img.tobytes())
        return -1, 0


def _check_save_options(opts: dict) -> None:
    """CodecError for a level, quality or choice of both that no model has, before torch loads."""
    from .codec import plans

    if opts.get("level") is not None and opts.get("quality") is not None:
        raise CodecError("give one of level and quality, not both")
    if opts.get("quality") is not None:
        plans.check_quality(opts["quality"])
    if opts.get("level") is not None:
        plans.as_level(opts["level"])


def _save(im: Image.Image, fp, filename) -> None:
    opts = im.encoderinfo
    _check_save_options(opts)
    from . import api

    data = api.encode(im, mode=opts.get("mode", "rec2"), level=opts.get("level"), quality=opts.get("quality"),
                      model=opts.get("model"), search=opts.get("search", 0), strip=opts.get("strip", False),
                      metadata={kind: MD.as_bytes(opts[kind]) for kind in MD.KINDS if opts.get(kind) is not None})
    fp.write(data)


def register(model=None) -> None:
    """Register the plugin with Pillow (done on import); ``model``: the weights that decoding
    uses (a shipped model's name or a .safetensors path; None: the model each file names)."""
    _options["model"] = model
    Image.register_open(FORMAT, SvaeImageFile, _accept)
    Image.register_save(FORMAT, _save)
    Image.register_extension(FORMAT, EXTENSION)
    Image.register_mime(FORMAT, MIME)
    Image.register_decoder(FORMAT, SvaeDecoder)


register()
