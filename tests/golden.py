"""Golden hashes of the codec's output: SHA-256 of the .svae bytes and of the decoded pixels of
the bundled sample (or a crop of it) for every shipped model, mode and level. A change meant to
move code without changing what it computes must leave every hash as it was.

    python -m tests.golden --write --crop 64  # the table the CI test checks: every model, mode and level
    python -m tests.golden --write --models selfvae-downscale,selfvae-downscale-elbo
                                              # the whole sample (slow; checked by a slow test): the
                                              # default, the lossless default and the 3-level model's rec1

Hashes are taken with one torch thread, the way the exact path is meant to be independent of.
A lossy case also records its PSNR against the sample: the pixels of a lossy decode come from
float networks, which another CPU may round differently by a level here and there (same()).
"""

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import torch

ASSET = Path(__file__).resolve().parents[1] / "selfcodec" / "assets" / "kodim23-crop.png"
GOLDEN = Path(__file__).resolve().parent / "golden_sample.json"
MODES = ["rec1", "rec2", "cgen", "crec", "lossless"]
LEVELS = [1, 2, 3, 4, 5, 6, 7]


def sample(crop: int | None = None) -> np.ndarray:
    from PIL import Image

    rgb = np.asarray(Image.open(ASSET).convert("RGB"))
    if crop:
        h, w = rgb.shape[:2]
        top, left = (h - crop) // 2, (w - crop) // 2
        rgb = np.ascontiguousarray(rgb[top:top + crop, left:left + crop])
    return rgb


def hashes(rgb: np.ndarray, model: str, mode: str, level: int) -> dict:
    """{"file": sha256 of the .svae bytes, "pixels": sha256 of the decoded uint8 pixels}, or
    {"error": the CodecError's class} for a mode the model does not have."""
    import selfcodec
    from selfcodec.errors import CodecError

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = selfcodec.encode(rgb, mode=mode, level=level, model=model)
        pixels = selfcodec.decode(data, model=model, as_array=True)
    except CodecError as e:
        return {"error": type(e).__name__}
    finally:
        torch.set_num_threads(threads)
    out = {"file": hashlib.sha256(data).hexdigest(), "pixels": hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()}
    if mode != "lossless":  # a lossy decode's last networks run in float: another CPU may round a pixel otherwise
        out["psnr"] = round(psnr(pixels, rgb), 4)
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    err = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / err)) if err else float("inf")


def same(got: dict, want: dict) -> bool:
    """Whether a case's output is the golden one: the file's bytes exactly (the exact path makes
    them the same on every machine), and its pixels exactly or, for a lossy decode whose float
    synthesis rounds differently on this CPU, within 0.01 dB of the golden PSNR."""
    if {k: v for k, v in got.items() if k != "psnr"} == {k: v for k, v in want.items() if k != "psnr"}:
        return True
    return (got.get("file") == want.get("file") and "psnr" in want and "psnr" in got
            and abs(got["psnr"] - want["psnr"]) < 0.01)


def table(models: list, crop: int | None, levels=LEVELS, modes=MODES) -> dict:
    rgb = sample(crop)
    out = {}
    for model in models:
        for mode in modes:
            for level in levels:
                out[f"{model}/{mode}/{level}"] = hashes(rgb, model, mode, level)
                print(model, mode, level, out[f"{model}/{mode}/{level}"], flush=True)
    return out


def main(argv=None):
    from selfcodec import zoo

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--crop", type=int, default=0, help="centre crop side (0: the whole sample)")
    ap.add_argument("--models", default=",".join(zoo.available()))
    ap.add_argument("--modes", default=",".join(MODES), help="only these modes (e.g. lossless after a stored-pixels change)")
    a = ap.parse_args(argv)
    key = f"crop{a.crop}" if a.crop else "full"
    got = table(a.models.split(","), a.crop or None, modes=a.modes.split(","))
    if a.write:
        golden = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
        golden.setdefault(key, {}).update(got)
        GOLDEN.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
