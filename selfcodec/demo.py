"""The main job in one call: code the bundled sample image in every mode with the default
model, decode each file, and report size, bpp, PSNR and time."""

import time
from pathlib import Path

import numpy as np
from PIL import Image

from . import api
from .metrics import psnr

SAMPLE = Path(__file__).resolve().parent / "assets" / "kodim23-crop.png"


def run(image=None, model=None, level: int = api.DEFAULT_LEVEL, modes=None) -> list:
    src = np.asarray(Image.open(image or SAMPLE).convert("RGB"))
    rows = []
    for mode in modes or api.MODES:
        t0 = time.perf_counter()
        data = api.encode(src, mode=mode, level=level, model=model)
        t1 = time.perf_counter()
        out = api.decode(data, model=model, as_array=True)
        t2 = time.perf_counter()
        rows.append({"mode": mode, "model": api.info(data)["model"], "level": level, "bytes": len(data), "bpp": 8 * len(data) / (src.shape[0] * src.shape[1]),
                     "psnr": psnr(src, out), "exact": bool(np.array_equal(src, out)),
                     "encode_s": t1 - t0, "decode_s": t2 - t1})
    return rows
