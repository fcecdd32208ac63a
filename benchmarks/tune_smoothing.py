"""Tune the decoder's smoothing of x̂ (selfcodec/codec/smoothing.py) for a model: for every mode
and level, the bilateral filter's range sigma that gives the highest mean PSNR on a set of photos
that are not Kodak (by default 16 of BSDS500 val), and with --write the model file with that
table in its config (a new file: a new model hash).

    python -m benchmarks.tune_smoothing models/selfvae-downscale.safetensors [--write OUT.safetensors]

Writes smoothing.json: per mode and level, the mean PSNR of x̂ unsmoothed and its gain at
every sigma tried, and the table chosen.
"""

import argparse
import json

import numpy as np
import torch

from benchmarks.common import DEFAULT_OUT, list_images, load_rgb, stamp, start_run, to_jsonable
from selfcodec import zoo
from selfcodec.codec import modes as M
from selfcodec.codec import smoothing as SM
from selfcodec.metrics import psnr
from selfcodec.model import checkpoint
from selfcodec.train.data import data_root

SIGMAS = [0, 2, 3, 4, 6, 8, 10, 12, 16, 20, 28, 40, 56]
MODES = ["rec1", "rec2", "cgen", "crec"]


def tune(net, imgs: list, levels: list) -> dict:
    """{mode: {"table": [sigma per level], "levels": [{level, psnr, gain per sigma}]}}, measured on
    x̂ without smoothing (the model's table set aside while it runs)."""
    table, net.cfg.smooth = net.cfg.smooth, {}
    try:
        out = {}
        for mode in MODES:
            plan, rows = M.plan_for(mode, net.cfg.scales), []
            for level in levels:
                recs = [M.encode_tile(net, img, plan, level, exact=True)[2] for img in imgs]
                base = float(np.mean([psnr(img, r) for img, r in zip(imgs, recs)]))
                gain = {s: float(np.mean([psnr(img, _smoothed(r, s)) for img, r in zip(imgs, recs)])) - base
                        for s in SIGMAS}
                rows.append({"level": level, "psnr": base, "gain_db": gain, "sigma": max(gain, key=gain.get)})
            out[mode] = {"table": [r["sigma"] for r in rows], "levels": rows}
        return out
    finally:
        net.cfg.smooth = table


def _smoothed(rec: np.ndarray, sigma: float) -> np.ndarray:
    if not sigma:
        return rec
    return M._to_uint8(SM.filtered(torch.from_numpy(rec.astype(np.float32)).permute(2, 0, 1)[None], sigma))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--data", default=str(data_root() / "bsds500" / "val"))
    ap.add_argument("--images", type=int, default=16, help="every (count // N)-th photo of the folder, N of them")
    ap.add_argument("--write", help="the model file with the table in its config")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    a = ap.parse_args(argv)
    argv, out_dir, _, note = start_run("tune_smoothing", a.out, argv)
    files = list_images(a.data)
    files = files[::max(1, len(files) // a.images)][:a.images]
    net = zoo.load(a.model)[0]
    imgs = [_cropped(load_rgb(f), net.multiple) for f in files]
    res = tune(net, imgs, list(range(1, M.level_count(net) + 1)))
    table = {mode: r["table"] for mode, r in res.items()}
    note(f"table: {json.dumps(table)}")
    meta = {**stamp(argv), "model": a.model, "data": a.data, "images": [f.name for f in files], "sigmas": SIGMAS,
            "diameter": SM.DIAMETER, "space_sigma": SM.SPACE_SIGMA, "table": table}
    (out_dir / "smoothing.json").write_text(json.dumps(to_jsonable({"meta": meta, "modes": res}), indent=1))
    if a.write:
        info = json.loads(checkpoint.read_metadata(a.model).get("info", "{}"))
        info["smooth"] = {"tuned_on": a.data, "images": len(files)}
        before, net.cfg.smooth = net.cfg.smooth, table  # (the zoo's cached model: put back after)
        try:
            checkpoint.save_model(net, a.write, dtype=_dtype_of(a.model), info=info)
        finally:
            net.cfg.smooth = before


def _cropped(img: np.ndarray, multiple: int) -> np.ndarray:
    h, w = (n - n % multiple for n in img.shape[:2])
    return np.ascontiguousarray(img[:h, :w])


def _dtype_of(path):
    return next(iter(checkpoint.load_tensors(path).values())).dtype


if __name__ == "__main__":
    main()
