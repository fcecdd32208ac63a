"""The metadata a photo carries beside its pixels: ICC profile, EXIF and XMP.

:func:`read` takes them from an opened Pillow image (as ``selfcodec.imageio.load_image`` does
for the encoder), :func:`save_options` gives them back as ``Image.save`` keyword arguments of
a format that can hold them (PNG, TIFF, WebP, JPEG). The names are Pillow's ``Image.info``
keys; the values are bytes, as the .svae container stores them (docs/format.md, "Metadata").

When the pixels were turned by the EXIF orientation, the orientation kept is 1 (in the EXIF
and in the XMP), so that no viewer turns the decoded image a second time.
"""

from __future__ import annotations

import re

from PIL import Image, PngImagePlugin

KINDS = ("icc_profile", "exif", "xmp")
ORIENTATION = 0x0112  # EXIF tag
_XMP_ORIENTATION = (re.compile(rb'(tiff:Orientation=")[0-9](")'),
                    re.compile(rb"(<tiff:Orientation>)[0-9](</tiff:Orientation>)"))
_XMP_KEYS = ("xmp", "XML:com.adobe.xmp")  # JPEG/WebP/TIFF give "xmp"; PNG's iTXt chunk its own key
_TIFF_XMP_TAG = 700
# What each format's Pillow writer stores; other formats drop the metadata (the CLI says so).
_WRITES = {"PNG": KINDS, "TIFF": KINDS, "WEBP": KINDS, "JPEG": KINDS, "AVIF": KINDS}


def orientation(img: Image.Image) -> int:
    """The EXIF orientation of an opened image (1 where it has none or its EXIF is broken)."""
    try:
        return int(img.getexif().get(ORIENTATION, 1))
    except Exception:  # noqa: BLE001 - broken EXIF: ignore it, as viewers do
        return 1


def read(img: Image.Image, oriented: bool) -> dict:
    """{kind: bytes} of an opened image's ICC profile, EXIF and XMP (those it has). oriented:
    the pixels were turned by the image's EXIF orientation, so the orientation kept is 1."""
    out = {}
    icc = img.info.get("icc_profile")
    if icc:
        out["icc_profile"] = bytes(icc)
    exif = _exif(img, oriented)
    if exif:
        out["exif"] = exif
    xmp = next((img.info[k] for k in _XMP_KEYS if img.info.get(k)), None)
    if xmp:
        xmp = as_bytes(xmp)
        out["xmp"] = _reset_xmp_orientation(xmp) if oriented else xmp
    return out


def as_bytes(value) -> bytes:
    """A metadata value as bytes (XMP may come as text: UTF-8)."""
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _exif(img: Image.Image, oriented: bool) -> bytes | None:
    raw = img.info.get("exif")
    if raw and not oriented:
        return bytes(raw)  # as the source stored it: nothing to change
    try:
        exif = img.getexif()  # the image's own (cached) Exif: changed for tobytes, then put back
        if not exif:
            return bytes(raw) if raw else None
        if not oriented:
            return exif.tobytes()
        was = exif[ORIENTATION]
        exif[ORIENTATION] = 1
        try:
            return exif.tobytes()
        finally:  # a caller's image keeps its orientation: coding it again turns it again, saving it stays right
            exif[ORIENTATION] = was
    except Exception:  # noqa: BLE001 - EXIF Pillow cannot parse: keep it as it was, or drop it
        return bytes(raw) if raw and not oriented else None


def _reset_xmp_orientation(xmp: bytes) -> bytes:
    for pattern in _XMP_ORIENTATION:
        xmp = pattern.sub(rb"\g<1>1\g<2>", xmp)
    return xmp


def attach(img: Image.Image, metadata: dict) -> Image.Image:
    """Put the metadata in ``img.info`` (where Pillow's readers put it: ``getexif()`` reads it too)."""
    for kind in KINDS:
        if metadata.get(kind):
            img.info[kind] = metadata[kind]
    return img


def of(img: Image.Image) -> dict:
    """The metadata :func:`attach` put on an image (or a reader did), by kind."""
    return {kind: img.info[kind] for kind in KINDS if img.info.get(kind)}


def dropped(fmt: str, metadata: dict) -> list:
    """The kinds of ``metadata`` a file of format ``fmt`` will not hold."""
    return [kind for kind in KINDS if metadata.get(kind) and kind not in _WRITES.get(fmt.upper(), ())]


def save_options(fmt: str, metadata: dict) -> dict:
    """``Image.save`` keyword arguments that write ``metadata`` in format ``fmt`` (what it can hold)."""
    fmt = fmt.upper()
    kept = {k: v for k, v in metadata.items() if v and k in _WRITES.get(fmt, ())}
    xmp = kept.pop("xmp", None)
    if xmp is None:
        return kept
    if fmt == "PNG":  # Pillow's PNG writer has no xmp option: the iTXt chunk readers look for
        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", xmp.decode("utf-8", errors="replace"))
        return {**kept, "pnginfo": info}
    if fmt == "TIFF":  # Pillow's TIFF writer takes tiffinfo or exif, not both: the EXIF's tags, plus XMP's
        tags = Image.Exif()
        if "exif" in kept:
            tags.load(kept.pop("exif"))
        tags[_TIFF_XMP_TAG] = xmp
        return {**kept, "tiffinfo": tags}
    return {**kept, "xmp": xmp}
