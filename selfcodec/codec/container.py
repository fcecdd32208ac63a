"""The ``.svae`` container: header, per-tile entropy-coded streams, optional alpha.

Pure Python (``struct`` + ``zlib``); no torch.  The byte layout is specified in
``docs/format.md``; keep the two in step.

Layout (little-endian)::

    magic "SVAE" | format_version u8 | coder_version u8 | flags u8 |
    name_len u8 | name | model_hash[8] | mode u8 | level u8 |
    height u16 | width u16 | pad_h u8 | pad_w u8 | tile_h varint | tile_w varint |
    n_streams u8 | pixel_crc u32 | payload_crc u32 | [level_frac u8] | [alpha_len varint] |
    [metadata_len varint | metadata] |
    stream length table (n_tiles * n_streams varints) | [layer CRCs: n_streams u32] |
    [tile CRCs: n_tiles (layered: n_streams * n_tiles) u32] | header_crc u32 | payload: streams in table order, then alpha bytes

A cgen or crec file of a downscale model (format version 3, flags bit 4) begins every tile's
latents stream with the encoder's upscale choice (codec/modes.py, has_upscale_choice); a
layered file of one (version 3, flags bits 3 and 4) ends each tile's first layer with one
per image below x. The layout is otherwise version 1's or 2's.

A file that carries the source image's metadata (ICC profile, EXIF, XMP) is format version 4
with flags bit 5: the metadata block sits in the header, under the header CRC, as entries of
(kind u8, length varint, bytes); the layout is otherwise version 3's, bits 3 and 4 included.

A file coded at a fractional level (between two trained levels) is format version 5 with flags
bit 6: one byte after payload_crc, level_frac, says the level is level + level_frac / 256; the
layout is otherwise version 4's (bits 3, 4 and 5 keep their meaning and may be clear).

A file of more than one tile, coded under priors computed over the whole image and reconstructed
across the tile borders (codec/tiled.py, codec/seamless.py), is format version 7 with flags bit 7;
the layout is otherwise version 5's (bits 3 to 6 keep their meaning and may be clear), plus a
CRC-32 of each tile's coded integers after the length table (a layered file's: per layer, then
per tile), which the decoder checks before it reconstructs the image. Without the bit, each tile
is coded and reconstructed on its own, as files of versions 1 to 5 are. Version 6 (the same
layout, each tile coded under its own priors) is no longer read.

A layered file (format version 2, flags bit 3) stores its streams layer by layer: the alpha
bytes first, then stream 0 of every tile, then stream 1 of every tile, ...; its length table
is in that order too, and a CRC-32 of each layer's coded integers follows it, so a prefix of
the file that ends after any layer holds whole layers that can be checked on their own.

``unpack`` and ``peek_header`` raise only :class:`FormatError` on bad input, check
every declared size against limits and against the bytes actually present before
allocating anything, and never loop more than the input length allows.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from fractions import Fraction

from selfcodec.errors import FormatError

__all__ = [
    "MAGIC",
    "FORMAT_VERSION",
    "CODER_VERSION",
    "FLOAT_CODER_VERSION",
    "COLOUR_L",
    "COLOUR_RGB",
    "COLOUR_RGBA",
    "COLOUR_NAMES",
    "MAX_SIDE",
    "MAX_PIXELS",
    "MAX_TILES",
    "MAX_NAME_BYTES",
    "MAX_VARINT_BYTES",
    "FIXED_HEADER_BYTES",
    "Header",
    "pack",
    "unpack",
    "peek_header",
    "unpack_layers",
    "pack_layers",
    "LAYERED_FORMAT_VERSION",
    "UPSCALE_FORMAT_VERSION",
    "METADATA_FORMAT_VERSION",
    "FRACTION_FORMAT_VERSION",
    "SEAMLESS_FORMAT_VERSION",
    "METADATA_KINDS",
    "MAX_METADATA_BYTES",
    "tile_grid",
    "header_size",
    "image_mode",
    "peek_image_mode",
    "encode_varint",
    "decode_varint",
]

MAGIC = b"SVAE"
#: Container layout version of files without layers (this build reads it and LAYERED_FORMAT_VERSION).
FORMAT_VERSION = 1
#: Container layout version of layered files: FORMAT_VERSION plus the layered flag and layer CRCs.
LAYERED_FORMAT_VERSION = 2
#: The layout of version 1, or of version 2 with the layered flag, plus the upscale-choice flag:
#: the tiles' latents streams carry choice symbols (cgen and crec files, and layered files whose
#: crec prefix has one; older readers refuse the version instead of misreading the streams).
UPSCALE_FORMAT_VERSION = 3
#: Version 3's layout (layered and upscale-choice flags as there) plus the metadata flag: a
#: metadata block in the header. Only files that carry metadata are written so; the others keep
#: their version, so their bytes do not change.
METADATA_FORMAT_VERSION = 4
#: Version 4's layout (its flags may be clear) plus the fractional-level flag and byte. Only files
#: at a fractional level are written so: a file at a whole level keeps its bytes.
FRACTION_FORMAT_VERSION = 5
#: Version 5 plus the seamless flag: the tiles' latents are coded under whole-image priors and x̂
#: is synthesised across tile borders (codec/tiled.py). Version 6 coded each tile under its own priors.
SEAMLESS_FORMAT_VERSION = 7
RETIRED_SEAMLESS_VERSION = 6
#: level_frac counts 1/LEVEL_DENOM of a level (codec/plans.py has the same number).
LEVEL_DENOM = 256
#: Entropy-coder bitstream version (constriction 0.5.x ANS / range coder streams). Version 4: the
#: tables come from the exact probability path (selfcodec/exact.py) and a lossy file's pixel_crc
#: field holds the CRC-32 of its coded integers. FLOAT_CODER_VERSION: the tables of float networks
#: (files written before; this build still reads them, and writes them only when asked to).
CODER_VERSION = 4
FLOAT_CODER_VERSION = 3

COLOUR_L = 0
COLOUR_RGB = 1
COLOUR_RGBA = 2
COLOUR_NAMES = {COLOUR_L: "L", COLOUR_RGB: "RGB", COLOUR_RGBA: "RGBA"}

#: Largest height or width (fits the u16 fields).
MAX_SIDE = 65535
#: Largest height * width.
MAX_PIXELS = 2**28
#: Largest number of tiles in the grid.
MAX_TILES = 65536
#: Longest model name, in UTF-8 bytes.
MAX_NAME_BYTES = 64
#: Longest LEB128 varint accepted (5 bytes = up to 2**35 - 1).
MAX_VARINT_BYTES = 5
MODEL_HASH_BYTES = 8
#: Metadata entries by kind code, in the order they are stored (names as Pillow's ``Image.info``).
METADATA_KINDS = {1: "icc_profile", 2: "exif", 3: "xmp"}
_METADATA_CODES = {v: k for k, v in METADATA_KINDS.items()}
#: Largest metadata block (all entries with their kind and length bytes): bounds what a header holds.
MAX_METADATA_BYTES = 1 << 24

#: Bytes of header that do not depend on the name or the streams:
#: everything except the name bytes, the stream length varints and the alpha
#: length varint, with tile_h = tile_w = 0 (one byte each).
FIXED_HEADER_BYTES = 39

_FLAG_COLOUR_MASK = 0x03
_FLAG_ALPHA = 0x04
_FLAG_LAYERED = 0x08
_FLAG_UPSCALE_CHOICE = 0x10
_FLAG_METADATA = 0x20
_FLAG_LEVEL_FRAC = 0x40
_FLAG_SEAMLESS = 0x80
_RESERVED = {FORMAT_VERSION: 0xF8, LAYERED_FORMAT_VERSION: 0xF0, UPSCALE_FORMAT_VERSION: 0xE0,
             METADATA_FORMAT_VERSION: 0xC0, FRACTION_FORMAT_VERSION: 0x80,
             SEAMLESS_FORMAT_VERSION: 0x00}  # flag bits per version

_U8_MAX = 0xFF
_U32_MAX = 0xFFFFFFFF


@dataclass
class Header:
    model_name: str
    model_hash: bytes
    mode: int
    level: int
    height: int
    width: int
    colour: int
    pad_h: int
    pad_w: int
    tile_h: int
    tile_w: int
    n_streams: int
    pixel_crc: int
    coder_version: int = CODER_VERSION
    format_version: int = FORMAT_VERSION
    #: one CRC-32 per layer (stream index) of its coded integers; empty for a file without layers
    layer_crcs: tuple = ()
    #: every tile's latents stream begins with the upscale choice (format version 3)
    upscale_choice: bool = False
    #: the source image's metadata by kind (METADATA_KINDS' names -> bytes; format version 4 if any)
    metadata: dict = field(default_factory=dict)
    #: the level's fraction in 1/256 (format version 5 if not 0): the file is coded at level + level_frac/256
    level_frac: int = 0
    #: x̂ is synthesised across tile borders (format version 7): a file of several tiles
    seamless: bool = False
    #: with `seamless`: CRC-32 of each tile's coded integers (layered: layer by layer, tile by tile)
    tile_crcs: tuple = ()

    @property
    def level_value(self):
        """The level the file is coded at: `level`, or a Fraction between it and the next level."""
        return Fraction(self.level * LEVEL_DENOM + self.level_frac, LEVEL_DENOM) if self.level_frac else self.level

    @property
    def layered(self) -> bool:
        return bool(self.layer_crcs)

    @property
    def n_tiles(self) -> int:
        return _n_tiles(self.height, self.width, self.tile_h, self.tile_w)

    @property
    def colour_name(self) -> str:
        return COLOUR_NAMES.get(self.colour, f"?{self.colour}")


# --------------------------------------------------------------------------- varints


def encode_varint(value: int) -> bytes:
    """Unsigned LEB128."""
    if value < 0:
        raise ValueError(f"varint must be >= 0, got {value}")
    if value >= 1 << (7 * MAX_VARINT_BYTES):
        raise ValueError(f"varint {value} too large (max {MAX_VARINT_BYTES} bytes)")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_varint(data: bytes, pos: int, what: str = "varint") -> tuple[int, int]:
    """Decode an unsigned LEB128 at ``pos``; return (value, new_pos).

    Rejects truncated, over-long (> MAX_VARINT_BYTES) and non-canonical encodings.
    """
    value = 0
    shift = 0
    for i in range(MAX_VARINT_BYTES):
        if pos + i >= len(data):
            raise FormatError(f"truncated file: {what} runs past the end of the data")
        byte = data[pos + i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if byte == 0 and i > 0:
                raise FormatError(f"corrupt header: non-canonical varint for {what}")
            return value, pos + i + 1
        shift += 7
    raise FormatError(f"corrupt header: {what} varint longer than {MAX_VARINT_BYTES} bytes")


# --------------------------------------------------------------------------- metadata


def encode_metadata(metadata: dict) -> bytes:
    """The metadata block: (kind u8, length varint, bytes) for each non-empty entry, in kind order."""
    unknown = set(metadata) - set(_METADATA_CODES)
    if unknown:
        raise ValueError(f"unknown metadata kinds {sorted(unknown)}; the container stores {list(_METADATA_CODES)}")
    out = bytearray()
    for code, name in METADATA_KINDS.items():
        value = metadata.get(name)
        if value is None:
            continue
        if not isinstance(value, (bytes, bytearray)):
            raise TypeError(f"metadata {name!r} must be bytes, not {type(value).__name__}")
        if not value:
            continue
        out += bytes([code]) + encode_varint(len(value)) + value
    if len(out) > MAX_METADATA_BYTES:
        raise ValueError(f"metadata of {len(out)} bytes; at most {MAX_METADATA_BYTES}")
    return bytes(out)


def decode_metadata(block: bytes) -> dict:
    """encode_metadata's inverse; FormatError unless the block is exactly its canonical form."""
    out, pos, last = {}, 0, 0
    while pos < len(block):
        code = block[pos]
        if code not in METADATA_KINDS or code <= last:
            raise FormatError(f"corrupt header: metadata entry of kind {code} (known kinds 1-3, each once, in order)")
        size, pos = decode_varint(block, pos + 1, "metadata entry length")
        if size == 0 or size > len(block) - pos:
            raise FormatError(f"corrupt header: metadata entry of {size} bytes in {len(block) - pos} remaining")
        out[METADATA_KINDS[code]] = block[pos : pos + size]
        pos, last = pos + size, code
    if not out:
        raise FormatError("corrupt header: the metadata flag is set but the metadata block is empty")
    return out


# --------------------------------------------------------------------------- tiling


def _n_tiles(height: int, width: int, tile_h: int, tile_w: int) -> int:
    th = tile_h or height
    tw = tile_w or width
    if th <= 0 or tw <= 0:
        return 0
    return (-(-height // th)) * (-(-width // tw))


def tile_grid(height: int, width: int, tile_h: int, tile_w: int) -> list[tuple[int, int, int, int]]:
    """(top, left, h, w) of every tile, row-major. ``tile_h``/``tile_w`` 0 = whole side."""
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    if tile_h < 0 or tile_w < 0:
        raise ValueError(f"tile size must be >= 0, got {tile_h}x{tile_w}")
    th = tile_h or height
    tw = tile_w or width
    grid = []
    for top in range(0, height, th):
        h = min(th, height - top)
        for left in range(0, width, tw):
            grid.append((top, left, h, min(tw, width - left)))
    return grid


# --------------------------------------------------------------------------- pack


def _check_int(name: str, value, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} = {value} out of range [{lo}, {hi}]")


def _validate_for_pack(header: Header) -> bytes:
    if not isinstance(header.model_name, str):
        raise TypeError(f"model_name must be a str, got {type(header.model_name).__name__}")
    name = header.model_name.encode("utf-8")
    if len(name) > MAX_NAME_BYTES:
        raise ValueError(f"model name is {len(name)} UTF-8 bytes; at most {MAX_NAME_BYTES}")
    if not isinstance(header.model_hash, (bytes, bytearray)) or len(header.model_hash) != MODEL_HASH_BYTES:
        raise ValueError(f"model_hash must be {MODEL_HASH_BYTES} bytes")
    want = _format_version(header)
    if header.format_version not in (FORMAT_VERSION, want):  # the default, or the version the file needs
        raise ValueError(f"this build writes format version {want} for this file, not {header.format_version}")
    if header.layered and len(header.layer_crcs) != header.n_streams:
        raise ValueError(f"a layered file needs one CRC per stream: {len(header.layer_crcs)} for {header.n_streams}")
    for c in header.layer_crcs:
        _check_int("layer CRC", c, 0, _U32_MAX)
    want_tile_crcs = _n_tile_crcs(header.seamless, header.layered, header.n_tiles, header.n_streams)
    if len(header.tile_crcs) != want_tile_crcs:
        raise ValueError(f"this file needs {want_tile_crcs} tile CRCs, not {len(header.tile_crcs)}")
    for c in header.tile_crcs:
        _check_int("tile CRC", c, 0, _U32_MAX)
    _check_int("coder_version", header.coder_version, 0, _U8_MAX)
    _check_int("mode", header.mode, 0, _U8_MAX)
    _check_int("level", header.level, 0, _U8_MAX)
    _check_int("level_frac", header.level_frac, 0, LEVEL_DENOM - 1)
    _check_int("height", header.height, 1, MAX_SIDE)
    _check_int("width", header.width, 1, MAX_SIDE)
    if header.height * header.width > MAX_PIXELS:
        raise ValueError(f"image has {header.height * header.width} pixels; at most {MAX_PIXELS}")
    _check_int("colour", header.colour, 0, max(COLOUR_NAMES))
    _check_int("pad_h", header.pad_h, 0, _U8_MAX)
    _check_int("pad_w", header.pad_w, 0, _U8_MAX)
    _check_int("tile_h", header.tile_h, 0, MAX_SIDE)
    _check_int("tile_w", header.tile_w, 0, MAX_SIDE)
    _check_int("n_streams", header.n_streams, 1, _U8_MAX)
    _check_int("pixel_crc", header.pixel_crc, 0, _U32_MAX)
    n_tiles = header.n_tiles
    if n_tiles > MAX_TILES:
        raise ValueError(f"tiling gives {n_tiles} tiles; at most {MAX_TILES}")
    return name


def pack(header: Header, tiles: list[list[bytes]], alpha: bytes | None = None) -> bytes:
    """Serialise a container. Raises ValueError/TypeError on invalid arguments."""
    name = _validate_for_pack(header)
    n_tiles = header.n_tiles
    if len(tiles) != n_tiles:
        raise ValueError(f"expected {n_tiles} tiles for the grid, got {len(tiles)}")
    for i, streams in enumerate(tiles):
        if len(streams) != header.n_streams:
            raise ValueError(f"tile {i} has {len(streams)} streams; header says {header.n_streams}")

    metadata = encode_metadata(header.metadata)
    flags = (header.colour | (_FLAG_ALPHA if alpha is not None else 0) | (_FLAG_LAYERED if header.layered else 0)
             | (_FLAG_UPSCALE_CHOICE if header.upscale_choice else 0) | (_FLAG_METADATA if metadata else 0)
             | (_FLAG_LEVEL_FRAC if header.level_frac else 0) | (_FLAG_SEAMLESS if header.seamless else 0))
    if header.layered:  # alpha first, then layer by layer
        streams = [bytes(ts[i]) for i in range(header.n_streams) for ts in tiles]
        payload = (bytes(alpha) if alpha is not None else b"") + b"".join(streams)
    else:
        streams = [bytes(s) for ts in tiles for s in ts]
        payload = b"".join(streams) + (bytes(alpha) if alpha is not None else b"")
    return _pack_raw(
        format_version=_format_version(header),
        coder_version=header.coder_version,
        flags=flags,
        name=name,
        model_hash=bytes(header.model_hash),
        mode=header.mode,
        level=header.level,
        height=header.height,
        width=header.width,
        pad_h=header.pad_h,
        pad_w=header.pad_w,
        tile_h=header.tile_h,
        tile_w=header.tile_w,
        n_streams=header.n_streams,
        pixel_crc=header.pixel_crc,
        alpha_len=len(alpha) if alpha is not None else None,
        metadata=metadata or None,
        level_frac=header.level_frac or None,
        lengths=[len(s) for s in streams],
        payload=payload,
        layer_crcs=list(header.layer_crcs),
        tile_crcs=list(header.tile_crcs),
    )


def _pack_raw(
    *,
    format_version: int,
    coder_version: int,
    flags: int,
    name: bytes,
    model_hash: bytes,
    mode: int,
    level: int,
    height: int,
    width: int,
    pad_h: int,
    pad_w: int,
    tile_h: int,
    tile_w: int,
    n_streams: int,
    pixel_crc: int,
    alpha_len: int | None,
    lengths: list[int],
    payload: bytes,
    payload_crc: int | None = None,
    header_crc: int | None = None,
    layer_crcs: list | None = None,
    metadata: bytes | None = None,
    level_frac: int | None = None,
    tile_crcs: list | None = None,
) -> bytes:
    """Write the byte layout without any semantic checks (``pack`` validates first).

    Fields only have to fit their encodings. Used by ``pack`` and by tests/fuzzers to
    build hostile files whose CRCs are nevertheless right. ``alpha_len`` is written
    iff it is not None (independently of ``flags``), and so are the metadata block and level_frac.
    """
    out = bytearray()
    out += MAGIC
    out += struct.pack("<BBBB", format_version, coder_version, flags, len(name))
    out += name
    out += model_hash
    out += struct.pack("<BBHHBB", mode, level, height, width, pad_h, pad_w)
    out += encode_varint(tile_h)
    out += encode_varint(tile_w)
    if payload_crc is None:
        payload_crc = zlib.crc32(payload)
    out += struct.pack("<BII", n_streams, pixel_crc, payload_crc)
    if level_frac is not None:
        out += struct.pack("<B", level_frac)
    if alpha_len is not None:
        out += encode_varint(alpha_len)
    if metadata is not None:
        out += encode_varint(len(metadata)) + metadata
    for n in lengths:
        out += encode_varint(n)
    for c in list(layer_crcs or ()) + list(tile_crcs or ()):
        out += struct.pack("<I", c)
    out += struct.pack("<I", zlib.crc32(out) if header_crc is None else header_crc)
    out += payload
    return bytes(out)


# --------------------------------------------------------------------------- unpack


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise FormatError(f"truncated file: {what} runs past the end of the data")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))

    def varint(self, what: str) -> int:
        value, self.pos = decode_varint(self.data, self.pos, what)
        return value

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos


def _parse_header(data) -> tuple[Header, int, list[int], int | None, int]:
    """Parse and verify the header; return (header, payload_crc, lengths, alpha_len, payload_start)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise FormatError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise FormatError("not a .svae file")
    r = _Reader(data)
    r.pos = len(MAGIC)
    format_version = r.u8("format version")
    if format_version == RETIRED_SEAMLESS_VERSION:
        raise FormatError("format version 6 (tiles coded under their own priors, written by selfcodec before "
                          "2026-12-07) is no longer read: encode the source image again")
    if format_version not in _RESERVED:
        raise FormatError(
            f"unsupported .svae format version {format_version}; this build reads version {FORMAT_VERSION} "
            f"(and {LAYERED_FORMAT_VERSION} for layered files, {UPSCALE_FORMAT_VERSION} for files with an upscale choice, "
            f"{METADATA_FORMAT_VERSION} for files with metadata, {FRACTION_FORMAT_VERSION} for files at a fractional level, "
            f"{SEAMLESS_FORMAT_VERSION} for files reconstructed across tiles)"
        )
    coder_version, flags, name_len = r.unpack("<BBB", "header")
    if flags & _RESERVED[format_version]:
        raise FormatError(f"corrupt header: reserved flag bits set (flags=0x{flags:02x})")
    layered, upscale_choice = bool(flags & _FLAG_LAYERED), bool(flags & _FLAG_UPSCALE_CHOICE)
    if format_version == LAYERED_FORMAT_VERSION and not layered:
        raise FormatError("corrupt header: a version-2 file without the layered flag")
    if format_version == UPSCALE_FORMAT_VERSION and not upscale_choice:
        raise FormatError("corrupt header: a version-3 file without the upscale-choice flag")
    if format_version == METADATA_FORMAT_VERSION and not flags & _FLAG_METADATA:
        raise FormatError("corrupt header: a version-4 file without the metadata flag")
    if format_version == FRACTION_FORMAT_VERSION and not flags & _FLAG_LEVEL_FRAC:
        raise FormatError("corrupt header: a version-5 file without the fractional-level flag")
    seamless = bool(flags & _FLAG_SEAMLESS)
    if format_version == SEAMLESS_FORMAT_VERSION and not seamless:
        raise FormatError(f"corrupt header: a version-{SEAMLESS_FORMAT_VERSION} file without the seamless flag")
    colour = flags & _FLAG_COLOUR_MASK
    if colour not in COLOUR_NAMES:
        raise FormatError(f"corrupt header: unknown colour type {colour}")
    has_alpha = bool(flags & _FLAG_ALPHA)
    if name_len > MAX_NAME_BYTES:
        raise FormatError(f"corrupt header: model name length {name_len} > {MAX_NAME_BYTES}")
    name_raw = r.take(name_len, "model name")
    model_hash = r.take(MODEL_HASH_BYTES, "model hash")
    mode, level, height, width, pad_h, pad_w = r.unpack("<BBHHBB", "header")
    if height == 0 or width == 0:
        raise FormatError(f"corrupt header: empty image size {height}x{width}")
    if height * width > MAX_PIXELS:
        raise FormatError(f"image too large: {height}x{width} exceeds {MAX_PIXELS} pixels")
    tile_h = r.varint("tile height")
    tile_w = r.varint("tile width")
    if tile_h > MAX_SIDE or tile_w > MAX_SIDE:
        raise FormatError(f"corrupt header: tile size {tile_h}x{tile_w} exceeds {MAX_SIDE}")
    n_streams, pixel_crc, payload_crc = r.unpack("<BII", "header")
    if n_streams == 0:
        raise FormatError("corrupt header: zero streams per tile")
    level_frac = r.u8("level fraction") if flags & _FLAG_LEVEL_FRAC else 0
    if flags & _FLAG_LEVEL_FRAC and level_frac == 0:
        raise FormatError("corrupt header: the fractional-level flag is set but the fraction is 0")
    alpha_len = r.varint("alpha length") if has_alpha else None
    metadata = _read_metadata(r) if flags & _FLAG_METADATA else {}

    n_tiles = _n_tiles(height, width, tile_h, tile_w)
    if n_tiles > MAX_TILES:
        raise FormatError(f"corrupt header: {n_tiles} tiles exceeds the limit of {MAX_TILES}")
    n_lengths = n_tiles * n_streams
    # Every length takes >= 1 byte and the header CRC 4 more: check before building the list.
    if n_lengths + 4 > r.remaining:
        raise FormatError(
            f"truncated file: header declares {n_lengths} streams but only {r.remaining} bytes follow"
        )
    lengths = []
    for i in range(n_lengths):
        lengths.append(r.varint(f"length of stream {i}"))
    layer_crcs = r.unpack(f"<{n_streams}I", "layer CRCs") if layered else ()
    n_tile_crcs = _n_tile_crcs(seamless, layered, n_tiles, n_streams)
    if 4 * n_tile_crcs + 4 > r.remaining:
        raise FormatError(f"truncated file: header declares {n_tile_crcs} tile CRCs but only {r.remaining} bytes follow")
    tile_crcs = r.unpack(f"<{n_tile_crcs}I", "tile CRCs") if n_tile_crcs else ()
    header_end = r.pos
    (header_crc,) = r.unpack("<I", "header CRC")
    if zlib.crc32(data[:header_end]) != header_crc:
        raise FormatError("corrupt header: header CRC mismatch")

    try:
        model_name = name_raw.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError("corrupt header: model name is not valid UTF-8") from None

    header = Header(
        model_name=model_name,
        model_hash=model_hash,
        mode=mode,
        level=level,
        height=height,
        width=width,
        colour=colour,
        pad_h=pad_h,
        pad_w=pad_w,
        tile_h=tile_h,
        tile_w=tile_w,
        n_streams=n_streams,
        pixel_crc=pixel_crc,
        coder_version=coder_version,
        format_version=format_version,
        layer_crcs=tuple(layer_crcs),
        upscale_choice=upscale_choice,
        metadata=metadata,
        level_frac=level_frac,
        seamless=seamless,
        tile_crcs=tuple(tile_crcs),
    )
    if seamless and n_tiles < 2:
        raise FormatError("corrupt header: the seamless flag on a file of one tile")
    return header, payload_crc, lengths, alpha_len, r.pos


def _read_metadata(r: _Reader) -> dict:
    size = r.varint("metadata length")
    if size > MAX_METADATA_BYTES:
        raise FormatError(f"corrupt header: metadata block of {size} bytes exceeds {MAX_METADATA_BYTES}")
    return decode_metadata(r.take(size, "metadata block"))


def _n_tile_crcs(seamless: bool, layered: bool, n_tiles: int, n_streams: int) -> int:
    """How many tile CRCs a header holds: one per tile (and layer) in a seamless file, else none."""
    return n_tiles * (n_streams if layered else 1) if seamless else 0


def _format_version(header: Header) -> int:
    if header.seamless:
        return SEAMLESS_FORMAT_VERSION
    if header.level_frac:
        return FRACTION_FORMAT_VERSION
    if any(header.metadata.values()):
        return METADATA_FORMAT_VERSION
    if header.upscale_choice:
        return UPSCALE_FORMAT_VERSION
    return LAYERED_FORMAT_VERSION if header.layered else FORMAT_VERSION


def peek_header(data: bytes) -> Header:
    """Parse and verify just the header (``data`` may stop right after the header CRC)."""
    return _parse_header(data)[0]


def image_mode(colour: int, has_alpha: bool) -> str:
    """The PIL mode of the image a file holds (L, LA, RGB or RGBA): grayscale may carry an alpha
    section, RGB never does and RGBA always does (FormatError otherwise)."""
    name = COLOUR_NAMES[colour]
    if name == "L":
        return "LA" if has_alpha else "L"
    if (name == "RGBA") != has_alpha:
        raise FormatError(f"corrupt header: colour type {name} {'with' if has_alpha else 'without'} an alpha section")
    return name


def peek_image_mode(data: bytes) -> str:
    """image_mode of a container, from its header alone (as peek_header reads it)."""
    header, _, _, alpha_len, _ = _parse_header(data)
    return image_mode(header.colour, alpha_len is not None)


def header_size(data: bytes) -> int:
    """Number of header bytes (through the header CRC) of a container."""
    return _parse_header(data)[4]


def require_coder_version(header: Header, pixel_streams: bool = True) -> None:
    """FormatError unless this build decodes the file's streams: versions 4 (exact tables) and 3
    (float tables). Coder version 3 changed only how pixels are coded (later channels under the
    joint mixture), so a file without pixel streams (latents only: rec1, rec2) reads the same under
    version 2."""
    v = header.coder_version
    if v not in (CODER_VERSION, FLOAT_CODER_VERSION) and (pixel_streams or v != 2):
        raise FormatError(f"unsupported entropy-coder version {v}; this build reads versions {FLOAT_CODER_VERSION} "
                          f"and {CODER_VERSION} (and 2 for files without pixel streams: rec1, rec2): re-encode the image")


def unpack(data: bytes, *, check_coder_version: bool = True) -> tuple[Header, list[list[bytes]], bytes | None]:
    """Parse a container; return (header, tiles, alpha). Raises only FormatError on bad data."""
    header, payload_crc, lengths, alpha_len, pos = _parse_header(data)
    data = bytes(data)
    if check_coder_version:
        require_coder_version(header)
    total = sum(lengths) + (alpha_len or 0)
    remaining = len(data) - pos
    if total > remaining:
        raise FormatError(f"truncated file: streams declare {total} bytes but {remaining} remain")
    if total < remaining:
        raise FormatError(f"trailing garbage: {remaining - total} bytes after the end of the container")
    if zlib.crc32(data[pos:]) != payload_crc:
        raise FormatError("corrupt payload: payload CRC mismatch")

    if header.layered:
        layers, alpha, _ = _split_layers(header, lengths, alpha_len, data, pos)
        return header, [list(ts) for ts in zip(*layers)], alpha
    tiles: list[list[bytes]] = []
    k = 0
    for _ in range(header.n_tiles):
        streams = []
        for _ in range(header.n_streams):
            n = lengths[k]
            streams.append(data[pos : pos + n])
            pos += n
            k += 1
        tiles.append(streams)
    alpha = data[pos : pos + alpha_len] if alpha_len is not None else None
    return header, tiles, alpha


def _split_layers(header: Header, lengths: list, alpha_len, data: bytes, pos: int):
    """(the layers whose bytes are all present, each a list of per-tile streams; the alpha bytes
    or None; where the payload's bytes end) of a layered file whose payload starts at pos."""
    alpha = None
    if alpha_len is not None:
        if pos + alpha_len > len(data):
            return [], None, pos
        alpha, pos = data[pos : pos + alpha_len], pos + alpha_len
    layers, k = [], 0
    for _ in range(header.n_streams):
        size = sum(lengths[k : k + header.n_tiles])
        if pos + size > len(data):
            break
        layer = []
        for n in lengths[k : k + header.n_tiles]:
            layer.append(data[pos : pos + n])
            pos += n
        layers.append(layer)
        k += header.n_tiles
    return layers, alpha, pos


def unpack_layers(data: bytes, partial: bool = False):
    """A layered file -> (header, layers, alpha): layers[i][t] is stream i of tile t, layer by
    layer. With `partial`, the file may stop anywhere after its header: only the layers whose
    bytes are all present come back (their layer CRCs, not the payload CRC, then guard them)."""
    if not partial:
        header, tiles, alpha = unpack(data, check_coder_version=False)
        if not header.layered:
            raise FormatError("not a layered file (written without layers): it cannot be cut or decoded in part")
        return header, [list(s) for s in zip(*tiles)], alpha
    header, _, lengths, alpha_len, pos = _parse_header(data)
    if not header.layered:
        raise FormatError("not a layered file (written without layers): it cannot be cut or decoded in part")
    data = bytes(data)
    layers, alpha, end = _split_layers(header, lengths, alpha_len, data, pos)
    if len(layers) == header.n_streams and end < len(data):
        raise FormatError(f"trailing garbage: {len(data) - end} bytes after the end of the container")
    return header, layers, alpha


def pack_layers(header: Header, layers: list, alpha: bytes | None = None) -> bytes:
    """pack() for a layered header given its streams layer by layer (layers[i][t])."""
    return pack(header, [list(ts) for ts in zip(*layers)], alpha)
