"""The generative commands: sample, upscale, interpolate (see selfcodec.model.generate)."""

from __future__ import annotations

from pathlib import Path

import click

from ._safeio import atomic_write, check_output

_HOWS = ["mean", "mode", "sample"]

_model_opt = click.option("--model", metavar="NAME|PATH", default=None,
                          help="Shipped model name or .safetensors file (default: the default model).")
_out_opt = click.option("-o", "--output", required=True, metavar="OUT.png", help="The PNG to write.")
_force_opt = click.option("-f", "--force", is_flag=True, help="Overwrite an existing output file (never an input).")
_how_opt = click.option("--how", type=click.Choice(_HOWS), default="mean", show_default=True,
                        help="Pixels from the decoder: the mixture's mean, its mode, or a sample (at the temperature).")
_device_opt = click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:1 ...")


def _load(model: str | None, device: str):
    from selfcodec import zoo

    net = zoo.load(model)[0]
    return net.to(device) if device != "cpu" else net


def _read(path: str):
    from selfcodec.imageio import load_image

    return load_image(path, allow_lossy_convert=True)[0]


def _write(img, output: str, force: bool, inputs: list[Path]) -> None:
    from selfcodec.imageio import image_to_bytes

    atomic_write(Path(output), image_to_bytes(img, "PNG"), force=force, inputs=inputs)
    click.echo(f"wrote {output} ({img.shape[1]}x{img.shape[0]})", err=True)


@click.command("sample")
@_model_opt
@click.option("-n", "count", default=16, show_default=True, type=click.IntRange(1, 1024), help="Number of samples.")
@_out_opt
@click.option("--size", default=64, show_default=True, type=click.IntRange(1, 4096),
              help="Side of each generated image in pixels.")
@click.option("--temperature", default=0.8, show_default=True, type=click.FloatRange(0.0, None),
              help="Scale of the prior noise of u and the z's (and of the pixels with --how sample).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--cols", default=None, type=click.IntRange(1, 1024), help="Samples per grid row (default: about sqrt(n)).")
@click.option("--no-y", is_flag=True, help="Show only x, not the intermediate self-supervised images.")
@_how_opt
@_device_opt
@_force_opt
def sample_cmd(model, count, output, size, temperature, seed, cols, no_y, how, device, force):
    """Generate images from the prior: u ~ p(u) -> y ~ p(y|u) -> z ~ p(z|y,u) -> x ~ p(x|y,z).

    Writes a grid; each cell shows the generated y's (upsampled) beside x.
    """
    from selfcodec.model import generate as G

    check_output(Path(output), [], force)
    net = _load(model, device)
    x, ys = G.sample(net, count, size, temperature, seed, how=how)
    _write(G.grid(x, [] if no_y else ys, cols=cols), output, force, [])


@click.command("upscale")
@click.argument("input", metavar="IN", type=click.Path(exists=True, dir_okay=False))
@_out_opt
@_model_opt
@click.option("--factor", type=click.Choice(["2", "4"]), default="2", show_default=True,
              help="Upscaling factor (4 needs the 3-level model).")
@_how_opt
@_device_opt
@_force_opt
def upscale_cmd(input, output, model, factor, how, device, force):
    """Super-resolve IN by conditional generation, using IN as the model's downscaled image y."""
    from selfcodec.model import generate as G

    check_output(Path(output), [Path(input)], force)
    net = _load(model, device)
    _write(G.upscale(net, _read(input), int(factor), how=how), output, force, [Path(input)])


@click.command("interpolate")
@click.argument("a", metavar="A", type=click.Path(exists=True, dir_okay=False))
@click.argument("b", metavar="[B]", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("-n", "count", default=8, show_default=True, type=click.IntRange(1, 256), help="Images in the strip.")
@_out_opt
@_model_opt
@click.option("--vary-z", is_flag=True, help="Keep u of A and draw the z's from the prior n times (no B).")
@click.option("--temperature", default=0.8, show_default=True, type=click.FloatRange(0.0, None),
              help="Prior noise scale of the z's with --vary-z.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--originals/--no-originals", default=True, show_default=True,
              help="Put the (cropped) input images at the ends of the strip.")
@_how_opt
@_device_opt
@_force_opt
def interpolate_cmd(a, b, count, output, model, vary_z, temperature, seed, originals, how, device, force):
    """Decode a straight path between the latents u of A and B (z's at their prior means);
    with --vary-z, keep u of A and vary the z's."""
    from selfcodec.model import generate as G

    if vary_z and b is not None:
        raise click.UsageError("--vary-z takes one image (A), not two")
    if not vary_z and b is None:
        raise click.UsageError("interpolate needs two images A and B (or --vary-z with one)")
    if not vary_z and count < 2:
        raise click.BadParameter("an interpolation needs at least 2 images", param_hint="'-n'")
    inputs = [Path(p) for p in (a, b) if p is not None]
    check_output(Path(output), inputs, force)
    net = _load(model, device)
    img_a = _read(a)
    if vary_z:
        frames = G.vary_z(net, img_a, count, temperature, seed, how=how)
        ends = G.common_crop(net, [img_a]) if originals else []
        pictures = ends + list(frames)
    else:
        img_b = _read(b)
        frames = G.interpolate(net, img_a, img_b, count, how=how)
        ca, cb = G.common_crop(net, [img_a, img_b])
        pictures = ([ca] if originals else []) + list(frames) + ([cb] if originals else [])
    _write(G.strip(pictures), output, force, inputs)
