"""`selfcodec info`: what a .svae file holds, from its header and stream table alone.

Torch-free (the container, the mode plans and a shipped model's configuration read from its
safetensors header), so that `selfcodec info` answers at once; selfcodec.api.info is this.
"""

from __future__ import annotations

from . import layered as LY
from ..model import modelfile
from .. import zoo
from . import plans as P
from . import container as C
from ..errors import CodecError


def info(data: bytes) -> dict:
    """What a .svae file holds, from its header and stream table (no model needed); a layered
    file also lists its layers, their bytes and the mode each cut makes, and a file with
    metadata the bytes of each kind."""
    data = bytes(data)
    header, tiles, alpha = C.unpack(data, check_coder_version=False)
    stored = header.mode == P.STORED
    mode = "lossless" if stored else P.MODE_NAMES.get(header.mode, f"unknown({header.mode})")
    if stored:
        names = ["pixels"]
    elif header.layered:
        levels = LY.levels_of(header)
        names = (LY.layer_names(levels) if levels >= 0 else ["u", "z"])[:header.n_streams]
    else:
        names = _stream_names(header, mode)
    streams = {n: sum(len(t[i]) for t in tiles) for i, n in enumerate(names)}
    if alpha is not None:
        streams["alpha"] = len(alpha)
    out = {"model": header.model_name, "model_hash": header.model_hash.hex(), "mode": mode,
           "level": float(header.level_value) if header.level_frac else header.level,
           "width": header.width, "height": header.height, "colour": C.COLOUR_NAMES.get(header.colour),
           "tiles": len(tiles), "across_tiles": header.seamless, "stored": stored, "bytes": len(data), "header_bytes": len(data) - sum(streams.values()),
           "bpp": 8 * len(data) / (header.width * header.height), "streams": streams,
           "pixel_crc32": f"{header.pixel_crc:08x}",
           "crc_of": ("coded integers" if header.coder_version == C.CODER_VERSION and mode != "lossless" and not header.layered
                      else "layers' coded integers" if header.layered and mode != "lossless" else "pixels"),
           "format_version": header.format_version,
           "coder_version": header.coder_version}
    if header.metadata:
        out["metadata"] = {kind: len(value) for kind, value in header.metadata.items()}
    if header.layered:
        modes = LY.modes_of(levels) if levels >= 0 else ["rec1", "rec2"]
        end, out["layers"] = C.header_size(data) + (len(alpha) if alpha is not None else 0), []
        for name, m in zip(names, modes):
            end += streams[name]
            out["layers"].append({"name": name, "bytes": streams[name], "mode": m, "ends_at_byte": end})
    return out


def _stream_names(header: C.Header, mode: str) -> list:
    """The streams' names, where the file's model is shipped (its configuration gives its levels)."""
    names = [f"stream{i}" for i in range(header.n_streams)]
    if header.model_name not in zoo.available() or mode not in P.MODE_CODES:
        return names
    try:
        levels = modelfile.config(zoo.model_path(header.model_name)).get("scales", 1)
        return P.stream_names(P.plan_for(mode, levels), levels)
    except CodecError:
        return names
