"""The selfVAE's generative side (paper section 3.3, figure 3; appendix A.7).

* :func:`sample`       unconditional generation  u ~ p(u) -> y_1 ~ p(y_1|u) -> z_k ~ p(z_k|..) -> ... -> x
* :func:`upscale`      super-resolution by conditional generation with the input as y
                       (u ~ q(u|y), z = prior mean, x = point estimate of p(x|y, z))
* :func:`interpolate`  linear paths between the posterior means of u of two images,
                       decoded through the chain with prior-mean z's (reconstruction-1 style)
* :func:`vary_z`       keep u of an image and draw the z's from the prior (appendix A.7)

Images go in and come out as uint8 numpy arrays (H x W x 3, batches N x H x W x 3);
self-supervised images y come out as N x h x w x C (C = 1 for a sketch).

`how` chooses the image decoder's output everywhere: ``"mean"`` (the mixture's mean, the
default: at low capacity it looks much better than a sample), ``"mode"`` (the most probable
component's centre) or ``"sample"`` (a draw from the DMoL at the temperature).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from . import chain
from ..entropy.dmol import DMoL
from .chain import Walker
from ..errors import CodecError
from ..nn.transforms import TRANSFORMS

HOWS = ("mean", "mode", "sample")


# --------------------------------------------------------------------------- helpers


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _check_how(how: str) -> None:
    if how not in HOWS:
        raise ValueError(f"how must be one of {', '.join(HOWS)}, not {how!r}")


def _posterior_mean(model, params: torch.Tensor) -> torch.Tensor:
    return params.chunk(2, 1)[0] if model.cfg.posterior == "gaussian" else params


def _image_out(model, k: int, params: torch.Tensor, how: str, temperature: float) -> torch.Tensor:
    c, m = model.img_ch[k], model.cfg.mixtures
    if how == "sample":
        return DMoL.sample(params, c, m, temperature)
    return DMoL.point(params, c, m, how)


class _GenerateWalker(Walker):
    """The generative chain from a given u. `known` fixes the first len(known) images (coarsest
    first); the latent z_k of a known image images[k] is its posterior mean, every other z_k is
    the prior mean (z="mean") or a draw from the prior with its scale times `temperature`
    (z="sample"); every other image is drawn from its likelihood (`how`)."""

    def __init__(self, u, known, z: str, temperature: float, how: str):
        self.u_given, self.known, self.z_how, self.temperature, self.how = u, list(known or []), z, temperature, how

    def u(self, model):
        return self.u_given

    def z(self, model, k, prior, img_prev, prev):
        if k < len(self.known):
            return _posterior_mean(model, model.q_z(k, self.known[k]))
        def one(part, m, ls):
            return m if self.z_how == "mean" else m + self.temperature * torch.exp(ls) * torch.randn_like(m)

        return chain.by_slices(model, k, *prior(), one)

    def image(self, model, k, decode, img_prev):
        if k < len(self.known):
            return self.known[k]
        params, h = decode()
        return model.staged_image(k, params, h, img_prev, lambda p: _image_out(model, k, p, self.how, self.temperature))


def _chain(model, u: torch.Tensor, known: list | None = None, z: str = "mean", temperature: float = 1.0,
           how: str = "mean") -> list:
    """Walk the generative chain from u (see _GenerateWalker); returns [images[0], ..., images[K]]
    (float 0..255)."""
    return chain.run(model, _GenerateWalker(u, known, z, temperature, how))


def _to_uint8(t: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) float 0..255 -> (N, H, W, C) uint8."""
    return t.detach().float().clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def _to_tensor(imgs, device) -> torch.Tensor:
    """uint8 H x W x 3 (or N x H x W x 3) -> float (N, 3, H, W) 0..255."""
    a = np.asarray(imgs)
    if a.dtype != np.uint8:
        raise ValueError(f"images must be uint8, not {a.dtype}")
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[-1] != 3:
        raise ValueError(f"images must be H x W x 3 (or N x H x W x 3), not shape {a.shape}")
    return torch.tensor(a).permute(0, 3, 1, 2).float().to(device)


def _seeded(seed):
    """A context in which torch's CPU (and current CUDA) RNG starts from `seed`; the global
    state is restored afterwards."""
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    ctx = torch.random.fork_rng(devices=devices)

    class _Ctx:
        def __enter__(self):
            ctx.__enter__()
            if seed is not None:
                torch.manual_seed(int(seed))

        def __exit__(self, *exc):
            return ctx.__exit__(*exc)

    return _Ctx()


def centre_crop(img: np.ndarray, h: int, w: int) -> np.ndarray:
    H, W = img.shape[:2]
    top, left = (H - h) // 2, (W - w) // 2
    return np.ascontiguousarray(img[top:top + h, left:left + w])


def common_crop(model, images) -> list:
    """Centre-crop every image to the largest common size that is a multiple of model.multiple."""
    m = model.multiple
    h = min(int(i.shape[0]) for i in images) // m * m
    w = min(int(i.shape[1]) for i in images) // m * m
    if h == 0 or w == 0:
        raise CodecError(f"images must be at least {m}x{m} pixels for this model")
    return [centre_crop(np.asarray(i), h, w) for i in images]


def _rgb(img) -> np.ndarray:
    a = np.asarray(img)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, -1)
    elif a.ndim == 3 and a.shape[2] == 1:
        a = np.repeat(a, 3, -1)
    elif a.ndim == 3 and a.shape[2] == 4:
        a = a[..., :3]
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"need a uint8 image, got {a.dtype} {a.shape}")
    return a


# --------------------------------------------------------------------------- generation


@torch.inference_mode()
def sample(model, n: int = 16, size: int = 64, temperature: float = 0.8, seed: int | None = 0,
           how: str = "mean", width: int | None = None):
    """Unconditional generation of n images of size x size (or size x width).

    u ~ p(u) (RealNVP at `temperature`), then each z_k ~ p(z_k | images[k-1], latent below) at
    `temperature`, and each image from its DMoL (`how`). Sizes that are not a multiple of
    model.multiple are generated at the next multiple and centre-cropped.

    Returns (x uint8 N x H x W x 3, [y_1, ..., y_K] each uint8 N x h x w x C).
    """
    _check_how(how)
    if n < 1:
        raise ValueError("n must be at least 1")
    height, width = int(size), int(size if width is None else width)
    if height < 1 or width < 1:
        raise ValueError("size must be positive")
    cfg, m = model.cfg, model.multiple
    H, W = -(-height // m) * m, -(-width // m) * m
    r = model.ratio ** cfg.scales
    shape = (n, cfg.u_ch, (H // r) >> model.u_down, (W // r) >> model.u_down)  # u_down: images[0] to u
    dev = _device(model)
    with _seeded(seed):
        u = model.flow.sample(shape, temperature=temperature, device=dev)
        imgs = _chain(model, u, z="sample", temperature=temperature, how=how)
    x = _to_uint8(imgs[-1])
    ys = [_to_uint8(y) for y in imgs[:-1]]
    if (H, W) != (height, width):
        x = np.stack([centre_crop(i, height, width) for i in x])
        ys = [np.stack([centre_crop(i, max(1, height * y.shape[1] // H), max(1, width * y.shape[2] // W)) for i in y])
              for y in ys]
    return x, ys


def _factor_steps(model, factor: int) -> int:
    if model.cfg.transform != "downscale":
        raise CodecError(f"upscaling needs a downscale model; {model.cfg.name!r} uses {model.cfg.transform!r}")
    if factor < 2 or factor & (factor - 1):
        raise CodecError(f"factor must be a power of two, not {factor}")
    j = int(math.log2(factor))
    if j > model.cfg.scales:
        raise CodecError(f"a model with {model.cfg.scales} self-supervised level(s) upscales at most "
                         f"{model.ratio ** model.cfg.scales}x, not {factor}x")
    return j


@torch.inference_mode()
def upscale(model, img, factor: int = 2, how: str = "mean") -> np.ndarray:
    """factor x super-resolution of `img` (uint8 H x W x 3) by conditional generation.

    The input becomes images[K - j] (factor = 2**j); the coarser images are the model's own
    downscales of it, u is the posterior mean of q(u | y_1), the latents of known images are
    their posterior means, the latents of generated images the prior means, and the generated
    images the DMoL point estimates. The input is edge-padded to the multiple the model needs
    and the output cropped to exactly factor x the input size.
    """
    _check_how(how)
    j = _factor_steps(model, factor)
    a = _rgb(img)
    h, w = a.shape[:2]
    m_in = max(1, model.multiple // factor)
    ph, pw = -h % m_in, -w % m_in
    if ph or pw:
        a = np.pad(a, ((0, ph), (0, pw), (0, 0)), mode="edge")
    y = _to_tensor(a, _device(model))
    down = TRANSFORMS[model.cfg.transform][0]
    known = [y]
    for _ in range(model.cfg.scales - j):
        known.insert(0, down(known[0]))
    u = _posterior_mean(model, model.q_u(known[0]))
    x = _chain(model, u, known, z="mean", how=how)[-1]
    return np.ascontiguousarray(_to_uint8(x)[0, : factor * h, : factor * w])


def model_downscale(model, img, factor: int = 2) -> np.ndarray:
    """The model's own downscale transform applied log2(factor) times (input cropped to a
    multiple of factor)."""
    j = _factor_steps(model, factor)
    a = _rgb(img)
    h, w = a.shape[0] // factor * factor, a.shape[1] // factor * factor
    t = _to_tensor(a[:h, :w], "cpu")
    fn = TRANSFORMS[model.cfg.transform][0]
    for _ in range(j):
        t = fn(t)
    return _to_uint8(t)[0]


def psnr_rgb(a: np.ndarray, b: np.ndarray) -> float:
    try:
        from ..metrics import psnr
    except ImportError:  # pragma: no cover - metrics ships with the package
        mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
        return 100.0 if mse == 0 else min(100.0, 10 * math.log10(255.0**2 / mse))
    return psnr(a, b)


def bicubic(img: np.ndarray, factor: int) -> np.ndarray:
    from PIL import Image

    h, w = img.shape[:2]
    return np.asarray(Image.fromarray(img).resize((w * factor, h * factor), Image.BICUBIC))


def upscale_benchmark(model, images, factor: int = 2, how: str = "mean") -> dict:
    """Downscale each image with the model's own transform, upscale it back with the model
    and with PIL bicubic, and compare both to the (cropped) original by PSNR (dB, RGB)."""
    rows = []
    for i, img in enumerate(images):
        a = _rgb(img)
        h, w = a.shape[0] // factor * factor, a.shape[1] // factor * factor
        ref = np.ascontiguousarray(a[:h, :w])
        small = model_downscale(model, ref, factor)
        rows.append({
            "index": i, "height": h, "width": w,
            "psnr_selfcodec": psnr_rgb(upscale(model, small, factor, how), ref),
            "psnr_bicubic": psnr_rgb(bicubic(small, factor), ref),
        })
    n = max(1, len(rows))
    return {
        "factor": factor,
        "images": len(rows),
        "mean_psnr_selfcodec": sum(r["psnr_selfcodec"] for r in rows) / n,
        "mean_psnr_bicubic": sum(r["psnr_bicubic"] for r in rows) / n,
        "per_image": rows,
    }


@torch.inference_mode()
def interpolate(model, a, b, n: int = 8, how: str = "mean") -> np.ndarray:
    """n decodes along the straight line between the posterior means of u of images a and b
    (both centre-cropped to a common multiple of model.multiple); z's are prior means.
    Returns uint8 N x H x W x 3 (the first and last are the reconstructions of a and b)."""
    _check_how(how)
    if n < 2:
        raise ValueError("n must be at least 2")
    a, b = common_crop(model, [_rgb(a), _rgb(b)])
    x = _to_tensor(np.stack([a, b]), _device(model))
    u = _posterior_mean(model, model.q_u(model.images(x)[0]))
    t = torch.linspace(0, 1, n, device=u.device).view(-1, 1, 1, 1)
    path = (1 - t) * u[0:1] + t * u[1:2]
    return _to_uint8(_chain(model, path, z="mean", how=how)[-1])


@torch.inference_mode()
def vary_z(model, a, n: int = 8, temperature: float = 0.8, seed: int | None = 0, how: str = "mean") -> np.ndarray:
    """Keep u of image a (posterior mean) and draw every z_k from its prior at `temperature`,
    n times (appendix A.7). Images are point estimates (`how`), so the variation comes from
    the z's. Returns uint8 N x H x W x 3."""
    _check_how(how)
    if n < 1:
        raise ValueError("n must be at least 1")
    (a,) = common_crop(model, [_rgb(a)])
    x = _to_tensor(a, _device(model))
    u = _posterior_mean(model, model.q_u(model.images(x)[0])).expand(n, -1, -1, -1).contiguous()
    with _seeded(seed):
        out = _chain(model, u, z="sample", temperature=temperature, how=how)
    return _to_uint8(out[-1])


# --------------------------------------------------------------------------- pictures


def _nearest(img: np.ndarray, h: int, w: int) -> np.ndarray:
    img = _rgb(img)
    rows = np.arange(h) * img.shape[0] // h
    cols = np.arange(w) * img.shape[1] // w
    return img[rows][:, cols]


def strip(images, gap: int = 2, background: int = 255, size: tuple | None = None) -> np.ndarray:
    """Images side by side, each resized (nearest) to `size` = (h, w), by default the last
    image's height and width; 1-channel images are shown in grey."""
    images = [_rgb(i) for i in images]
    h, w = size or images[-1].shape[:2]
    out = np.full((h, len(images) * (w + gap) - gap, 3), background, np.uint8)
    for i, img in enumerate(images):
        out[:, i * (w + gap): i * (w + gap) + w] = _nearest(img, h, w)
    return out


def grid(x: np.ndarray, ys=(), cols: int | None = None, gap: int = 2, background: int = 255) -> np.ndarray:
    """A grid of cells [y_1 | ... | y_K | x], one per sample; each y is upsampled (nearest) to
    x's size and a 1-channel y is shown in grey."""
    n, h, w = x.shape[:3]
    cols = cols or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / cols)
    cells = [strip([y[i] for y in ys] + [x[i]], gap=1, background=background) for i in range(n)]
    ch, cw = cells[0].shape[:2]
    big = 3 * gap if ys else gap
    out = np.full((rows * (ch + gap) - gap, cols * (cw + big) - big, 3), background, np.uint8)
    for i, cell in enumerate(cells):
        r, c = divmod(i, cols)
        out[r * (ch + gap): r * (ch + gap) + ch, c * (cw + big): c * (cw + big) + cw] = cell
    return out
