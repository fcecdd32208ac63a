"""Metadata kept: a Display-P3 PNG's ICC profile, a JPEG's EXIF (orientation applied, then reset
to 1) and XMP go into the .svae file (format version 4) and come back on decode, in PNG, TIFF
and WebP outputs and through the Pillow plugin; strip=True leaves them out. The ICC profile
and the photo are made here; tiny random-init models code them."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image, ImageCms

from selfcodec import api
from selfcodec import metadata as MD
from selfcodec.codec import container as C
from selfcodec.imageio import image_to_bytes, load_image

ORIENTATION, MAKE, DATETIME = 0x0112, 0x010F, 0x0132
XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
       b'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>')


def _s15(v: float) -> bytes:
    return struct.pack(">i", round(v * 65536))


def display_p3_icc() -> bytes:
    """An ICC v2 display profile of Display P3: its primaries (D50-adapted) and its transfer curve,
    the sRGB one (as a 1024-entry table)."""
    def xyz(x, y, z):
        return b"XYZ " + bytes(4) + _s15(x) + _s15(y) + _s15(z)

    def srgb_to_linear(v: float) -> float:
        return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4

    desc = b"Display P3\0"
    table = [round(65535 * srgb_to_linear(i / 1023)) for i in range(1024)]
    curve = b"curv" + bytes(4) + struct.pack(f">I{len(table)}H", len(table), *table)
    tags = [(b"desc", b"desc" + bytes(4) + struct.pack(">I", len(desc)) + desc + bytes(78)),
            (b"cprt", b"text" + bytes(4) + b"test data\0"), (b"wtpt", xyz(0.9642, 1.0, 0.8249)),
            (b"rXYZ", xyz(0.5151, 0.2412, -0.0011)), (b"gXYZ", xyz(0.2920, 0.6922, 0.0419)),
            (b"bXYZ", xyz(0.1571, 0.0666, 0.7841)), (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve)]
    table, body, start = b"", b"", 128 + 4 + 12 * len(tags)
    for sig, data in tags:
        data += bytes(-len(data) % 4)
        table += sig + struct.pack(">II", start + len(body), len(data))
        body += data
    header = (struct.pack(">I", start + len(body)) + b"lcms" + struct.pack(">I", 0x02100000) + b"mntrRGB XYZ "
              + bytes(12) + b"acsp" + b"APPL" + bytes(24) + _s15(0.9642) + _s15(1.0) + _s15(0.8249) + bytes(48))
    return header + struct.pack(">I", len(tags)) + table + body


@pytest.fixture(scope="module")
def p3_png(natural) -> bytes:
    icc = display_p3_icc()
    assert ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc))).strip() == "Display P3"
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(natural[:16, :16])).save(buf, "PNG", icc_profile=icc)
    return buf.getvalue()


@pytest.fixture(scope="module")
def exif_jpeg(natural) -> bytes:
    """A 24x16 JPEG whose EXIF says: Make, DateTime, and turn it 90 degrees (orientation 6)."""
    exif = Image.Exif()
    exif[MAKE], exif[DATETIME], exif[ORIENTATION] = "selfcodec test camera", "2026:12:02 10:00:00", 6
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(natural[:16, :24])).save(buf, "JPEG", quality=95, exif=exif, xmp=XMP)
    return buf.getvalue()


def test_p3_png_profile_is_stored_and_restored(p3_png, tiny_model):
    icc = Image.open(io.BytesIO(p3_png)).info["icc_profile"]
    data = api.encode(p3_png, "lossless", model=tiny_model)
    assert data[4] == C.METADATA_FORMAT_VERSION and C.peek_header(data).metadata == {"icc_profile": icc}
    img = api.decode(data, model=tiny_model)
    assert img.info["icc_profile"] == icc
    for fmt in ("PNG", "TIFF", "WEBP"):
        back = Image.open(io.BytesIO(image_to_bytes(img, fmt)))
        assert back.info.get("icc_profile") == icc, fmt
        np.testing.assert_array_equal(np.asarray(back), np.asarray(Image.open(io.BytesIO(p3_png))))
    # What a colour-managed viewer shows: the decoded file in sRGB is the source's, not its raw P3 values.
    srgb = ImageCms.createProfile("sRGB")
    shown = np.asarray(ImageCms.profileToProfile(img, io.BytesIO(img.info["icc_profile"]), srgb), dtype=int)
    with Image.open(io.BytesIO(p3_png)) as src:
        want = np.asarray(ImageCms.profileToProfile(src, io.BytesIO(icc), srgb), dtype=int)
        raw = np.asarray(src, dtype=int)
    np.testing.assert_array_equal(shown, want)
    assert np.abs(shown - raw).max() > 5  # the profile matters: without it the colours are off


def test_exif_jpeg_orientation_applied_once_and_reset(exif_jpeg, tiny_model):
    data = api.encode(exif_jpeg, "rec1", model=tiny_model)
    img = api.decode(data, model=tiny_model)
    assert img.size == (16, 24)  # turned as the orientation said
    exif = img.getexif()
    assert (exif[ORIENTATION], exif[MAKE], exif[DATETIME]) == (1, "selfcodec test camera", "2026:12:02 10:00:00")
    assert b'tiff:Orientation="1"' in img.info["xmp"]
    for fmt in ("PNG", "TIFF", "WEBP"):
        back = Image.open(io.BytesIO(image_to_bytes(img, fmt)))
        exif = back.getexif()
        assert (exif.get(ORIENTATION), exif.get(MAKE)) == (1, "selfcodec test camera"), fmt
        assert b'tiff:Orientation="1"' in MD.as_bytes(back.info.get("xmp") or back.info.get("XML:com.adobe.xmp")), fmt
        assert back.size == (16, 24)


def test_coding_an_opened_photo_leaves_its_orientation_alone(exif_jpeg, tiny_model, tmp_path, pillow_plugin):
    """The caller's image is not changed: coding it twice (API or Pillow save) turns it both times,
    and its own EXIF still says 6 for its unturned pixels."""
    with Image.open(io.BytesIO(exif_jpeg)) as im:
        first = api.encode(im, "rec1", model=tiny_model)
        assert im.getexif()[ORIENTATION] == 6 and im.size == (24, 16)
        assert api.encode(im, "rec1", model=tiny_model) == first
        for name in ("a.svae", "b.svae"):
            im.save(tmp_path / name, mode="rec1", model=tiny_model)
            assert (tmp_path / name).read_bytes() == first
    header = C.peek_header(first)
    assert (header.width, header.height) == (16, 24)


def test_exif_without_orientation_is_kept_byte_for_byte(natural):
    exif = Image.Exif()
    exif[MAKE] = "camera"
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(natural[:8, :8])).save(buf, "PNG", exif=exif)
    _, meta = load_image(buf.getvalue())
    assert meta.metadata["exif"] == Image.open(io.BytesIO(buf.getvalue())).info["exif"]


def test_strip_leaves_the_file_as_without_metadata(p3_png, exif_jpeg, tiny_model):
    for src in (p3_png, exif_jpeg):
        stripped = api.encode(src, "rec1", model=tiny_model, strip=True)
        pixels, _ = load_image(src)
        assert stripped == api.encode(pixels, "rec1", model=tiny_model)  # the very bytes of a metadata-free file
        assert stripped[4] == C.FORMAT_VERSION
        assert api.decode(stripped, model=tiny_model).info == {}


def test_metadata_replaced_or_dropped_on_request(p3_png, tiny_model):
    data = api.encode(p3_png, "rec1", model=tiny_model, metadata={"icc_profile": b"", "xmp": XMP})
    assert C.peek_header(data).metadata == {"xmp": XMP}


def test_pillow_plugin_restores_and_saves_metadata(p3_png, exif_jpeg, tiny_model, tmp_path, pillow_plugin):
    plugin = pillow_plugin
    plugin.register(model=tiny_model)
    try:
        icc = Image.open(io.BytesIO(p3_png)).info["icc_profile"]
        Image.open(io.BytesIO(p3_png)).save(tmp_path / "p3.svae", mode="rec1", model=tiny_model)
        Image.open(io.BytesIO(exif_jpeg)).save(tmp_path / "photo.svae", mode="rec1", model=tiny_model)
        with Image.open(tmp_path / "p3.svae") as im:
            assert im.info["icc_profile"] == icc  # from the header, before any decoding
            im.load()
            assert im.info["icc_profile"] == icc
        with Image.open(tmp_path / "photo.svae") as im:
            assert im.size == (16, 24) and im.getexif()[MAKE] == "selfcodec test camera"
            assert im.getexif()[ORIENTATION] == 1
        Image.open(io.BytesIO(p3_png)).save(tmp_path / "bare.svae", mode="rec1", model=tiny_model, strip=True)
        Image.open(io.BytesIO(p3_png)).save(tmp_path / "other.svae", mode="rec1", model=tiny_model, icc_profile=b"x")
        assert C.peek_header((tmp_path / "bare.svae").read_bytes()).metadata == {}
        assert C.peek_header((tmp_path / "other.svae").read_bytes()).metadata == {"icc_profile": b"x"}
    finally:
        plugin.register(model=None)


def test_cut_layered_file_keeps_its_metadata(p3_png, tiny_model):
    data = api.encode(p3_png, "lossless", model=tiny_model)
    cut = api.truncate(data, "rec2")
    assert C.peek_header(cut).metadata == C.peek_header(data).metadata
    assert api.decode(cut, model=tiny_model).info["icc_profile"] == C.peek_header(data).metadata["icc_profile"]
