"""Figures of the generative side for the README (run by hand with a trained model):

    nice python -m benchmarks.generative_figures --model PATH [--out benchmarks/results/]

writes sample_grid.png (samples from the prior, y beside x), upscale_example.png (a Kodak
crop: bicubic | selfcodec | original, each 2x from the model's own downscale),
interpolate_strip.png (two Kodak crops and the path between their u's) and vary_z_strip.png
(one Kodak crop, then its u with z's drawn from the prior). With --model-4x (a 3-level model),
also upscale4_example.png: the same crop 4x from its twice-downscaled image.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    __package__ = "benchmarks"

from benchmarks.common import DEFAULT_KODAK, DEFAULT_OUT, center_crop, load_rgb


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.generative_figures", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="model name or .safetensors file")
    p.add_argument("--model-4x", default=None, help="a 3-level model for the 4x upscaling figure")
    p.add_argument("--out", default=str(DEFAULT_OUT))
    p.add_argument("--kodak", default=str(DEFAULT_KODAK))
    p.add_argument("--size", type=int, default=64, help="side of the samples")
    p.add_argument("-n", type=int, default=16, help="number of samples")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--crop", type=int, default=128, help="side of the Kodak crops")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--how", default="mean", choices=["mean", "mode", "sample"])
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args(argv)


def main(argv=None) -> list:
    args = parse_args(argv)
    import torch

    from selfcodec.model import generate as G
    from selfcodec import zoo
    from selfcodec.imageio import save_image

    torch.set_num_threads(args.threads)
    net = zoo.load(args.model)[0]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    kodak = Path(args.kodak)
    written = []

    def save(img, name):
        save_image(img, out / name)
        written.append(str(out / name))
        print(f"wrote {out / name} ({img.shape[1]}x{img.shape[0]})")

    x, ys = G.sample(net, args.n, args.size, args.temperature, args.seed, how=args.how)
    save(G.grid(x, ys), "sample_grid.png")

    def upscale_figure(model, factor, name):
        ref = center_crop(load_rgb(kodak / "kodim23.png"), args.crop)
        small = G.model_downscale(model, ref, factor)
        ref = ref[: factor * small.shape[0], : factor * small.shape[1]]
        up = G.upscale(model, small, factor, how="mean" if args.how == "sample" else args.how)
        bicubic = G.bicubic(small, factor)
        print(f"{factor}x upscale PSNR: bicubic {G.psnr_rgb(bicubic, ref):.2f} dB, selfcodec {G.psnr_rgb(up, ref):.2f} dB")
        save(G.strip([bicubic, up, ref], gap=4), name)

    if net.cfg.transform == "downscale":
        upscale_figure(net, 2, "upscale_example.png")
    if args.model_4x:
        upscale_figure(zoo.load(args.model_4x)[0], 4, "upscale4_example.png")

    a = center_crop(load_rgb(kodak / "kodim15.png"), args.crop)
    b = center_crop(load_rgb(kodak / "kodim04.png"), args.crop)
    frames = G.interpolate(net, a, b, 8, how="mean" if args.how == "sample" else args.how)
    ca, cb = G.common_crop(net, [a, b])
    save(G.strip([ca, *frames, cb]), "interpolate_strip.png")

    frames = G.vary_z(net, a, 8, args.temperature, args.seed, how="mean" if args.how == "sample" else args.how)
    save(G.strip([G.common_crop(net, [a])[0], *frames]), "vary_z_strip.png")
    return written


if __name__ == "__main__":
    main()
