"""x̂ of a tiled lossy file, synthesised across tile borders.

Each tile is entropy-coded on its own streams, under its crop of priors computed over the whole
image (tiled.py), and what the networks reconstruct from the coded variables, û, the ẑ sent,
the images sent, is computed over the whole image too: in windows whose margin exceeds the fast
networks' reach (MARGIN; tests/test_seamless.py checks it), so each window's core is what a
whole-image synthesis gives and the networks' memory stays bounded by the window (what grows
with the image: the output, the whole-image latents and the images sent or estimated, Coded). Where a ẑ is not sent
(rec1, cgen, a file that chose the upscale) its prior's mean is computed in the windows too.
No tile border shows, and the image is the same whatever the tile size.
"""

import functools
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..model import chain
from ..model import exact as X
from ..model.chain import Walker
from . import modes as M

WINDOW = 1024  # a synthesis window reads at most (WINDOW + 2 MARGIN)^2 pixels (windows() shapes them to the image)
# Context read beyond the core on each side, pixels: more than the fast family's reach (rec1's
# x̂ through ẑ's prior mean reaches 96), so its windows are exact. The DenseNet family's deep
# full-resolution nets reach further: its windows differ by at most 3 levels in a few pixels.
MARGIN = 128


@dataclass
class Coded:
    """The whole image's coded variables, stitched from its tiles."""

    size: tuple  # the padded image's (H, W)
    level: object  # the quality level (an int or a Fraction): the decoder's smoothing of x̂ follows it
    u: torch.Tensor  # û
    zs: list  # per k >= 1: ẑ_k (None: not sent)
    imgs: list  # images[0..sent], then any point estimates above them already computed
    chosen: np.ndarray  # per tile: it carries the upscale of the image sent (the same in every tile)
    grid: list = field(default_factory=list)  # the tiles' (top, left, h, w), unpadded


class _Reconstruct(Walker):
    """The chain over one window with everything coded known: û, the ẑ sent (a ẑ not sent is its
    prior's mean), the images sent (or already estimated); the images above them are the
    likelihood's point estimates."""

    def __init__(self, u, zs, imgs, how):
        self.u_hat, self.zs, self.imgs, self.how, self.h = u, zs, imgs, how, None

    def u(self, model):
        return self.u_hat

    def z(self, model, k, prior, img_prev, prev):
        if self.zs[k - 1] is not None:
            return self.zs[k - 1]
        return M._prior_means(model, k, *prior())

    def image(self, model, k, decode, img_prev):
        if k < len(self.imgs):
            return self.imgs[k]
        params, self.h = decode()
        return M._point(model, k, params, self.h, img_prev, self.how)


@functools.lru_cache(maxsize=32)  # (the prior of each ẑ and the reconstruction walk the same grid)
def windows(H: int, W: int, window: int = WINDOW, margin: int = MARGIN, multiple: int = 1, shaped: bool = True) -> tuple:
    """(core box, read box) per window over an H x W image, boxes as (top, left, bottom, right);
    the read box is the core grown by `margin`, clipped to the image. Every read box is at most
    (window + 2 margin)^2 pixels (the networks' memory). Shaped: of the grids of equal cores on
    `multiple`'s grid, the one that reads the fewest pixels in all (a 1224x816 photo is one
    window, not a 1024-wide one and a thin one beside it); else square cores of `window`, as
    before 2026-12-07 (for the DenseNet family, whose reach exceeds the margin: its probability
    path must see the windows the files were written with)."""
    window, margin = (-(-n // multiple) * multiple for n in (window, margin))
    if not shaped:
        return _grid(list(range(0, H, window)) + [H], list(range(0, W, window)) + [W], H, W, margin)
    budget = (window + 2 * margin) ** 2
    best = None
    for rows in range(1, -(-H // multiple) + 1):
        tops = _cuts(H, rows, multiple)
        heights = _read_sides(tops, H, margin)
        room = budget // max(heights)  # the widest read box this row height allows
        if min(W, multiple + 2 * margin) > room:
            continue
        # fewest columns whose cores fit: a core of c reads at most c + 2 margin (one image edge: c + margin)
        cols = 1 if W <= room else max(2, -(-W // max(multiple, (room - margin) // multiple * multiple)))
        while True:
            lefts = _cuts(W, cols, multiple)
            widths = _read_sides(lefts, W, margin)
            if max(widths) <= room or lefts[1] - lefts[0] <= multiple:
                break
            cols += 1
        if max(widths) > room:
            continue
        read = sum(heights) * sum(widths)
        if best is None or read < best[0]:
            best = (read, tops, lefts)
        if sum(heights) * W > best[0]:  # more rows only read more
            break
    return _grid(best[1], best[2], H, W, margin)


def _grid(tops: list, lefts: list, H: int, W: int, margin: int) -> tuple:
    out = []
    for top, bottom in zip(tops, tops[1:]):
        for left, right in zip(lefts, lefts[1:]):
            read = (max(0, top - margin), max(0, left - margin), min(H, bottom + margin), min(W, right + margin))
            out.append(((top, left, bottom, right), read))
    return tuple(out)


def shaped_windows(net) -> bool:
    """Whether `net`'s windows may be shaped to the image: the fast family's reach is within the
    margin, so its results do not depend on the windows at all."""
    return net.cfg.network == "fast"


def _cuts(n: int, parts: int, multiple: int) -> list:
    """Boundaries 0 = c_0 < ... = n of at most `parts` pieces of equal sides on the grid."""
    side = -(-(-(-n // parts)) // multiple) * multiple
    return list(range(0, n, side)) + [n]


def _read_sides(cuts: list, n: int, margin: int) -> list:
    return [min(n, b + margin) - max(0, a - margin) for a, b in zip(cuts, cuts[1:])]


def crop(t, box, H: int, f: int | None = None):
    """The part of t (a variable of an image of padded height H, at its own scale: f pixels per
    element, by default H over its height) under a pixel box; a part that ends at the image's
    edge takes the elements that round up (v's grid: hyper_side)."""
    if t is None:
        return None
    f = f or H // t.shape[-2]
    top, left, bottom, right = box
    return t[..., top // f:-(-bottom // f), left // f:-(-right // f)]


@torch.inference_mode()
def reconstruct(net, coded: Coded, plan, how: str = "mean", valid: tuple | None = None,
                window: int = WINDOW, margin: int = MARGIN) -> np.ndarray:
    """x̂ uint8 (H, W, 3) of the padded image from its coded variables; net: the model as the
    codec runs it (exact.ExactModel on the exact path). valid: the image's (h, w) without
    padding, for the upscale of the tiles that chose it."""
    K, sent = net.cfg.scales, plan.sent
    H, W = coded.size
    out = np.empty((H, W, 3), np.uint8)
    up = _upscaled_tiles(net, coded, sent, valid or (H, W))
    for core, read in ([] if coded.chosen.all() else windows(H, W, window, margin, net.multiple, shaped_windows(net))):  # (all upscaled: no synthesis)
        walker = _Reconstruct(crop(coded.u, read, H), [crop(z, read, H) for z in coded.zs],
                              [crop(img, read, H) for img in coded.imgs], how)
        x = M.finish_x(net, plan, coded.level, how, chain.run(net, walker)[K], walker.h)
        t, l = core[0] - read[0], core[1] - read[1]
        x = x[..., t:t + core[2] - core[0], l:l + core[3] - core[1]]
        out[core[0]:core[2], core[1]:core[3]] = M._to_uint8(x)
    for (top, left, th, tw), img in up:
        out[top:top + th, left:left + tw] = img
    return out


def _upscaled_tiles(net, coded: Coded, sent: int, valid: tuple, which=None) -> list:
    """((top, left, h, w), uint8 pixels) of each tile that carries the upscale of the image sent
    (or of each tile `which` says): the bicubic upscale of the whole image sent (over its valid
    part), read in the tile's window."""
    which = coded.chosen if which is None else which
    if not which.any():
        return []
    f = net.ratio ** (net.cfg.scales - sent)
    img = coded.imgs[sent][..., :-(-valid[0] // f), :-(-valid[1] // f)]
    pad = 4 * f  # bicubic reads two pixels each side
    out = []
    for (top, left, th, tw), chosen in zip(coded.grid, which):
        if not chosen:
            continue
        r0, c0 = max(0, top - pad), max(0, left - pad)
        part = img[..., r0 // f:-(-(top + th + pad) // f), c0 // f:-(-(left + tw + pad) // f)]
        x = F.interpolate(part.float(), scale_factor=f, mode="bicubic", align_corners=False)
        out.append(((top, left, th, tw), M._to_uint8(x[..., top - r0:top - r0 + th, left - c0:left - c0 + tw])))
    return out


def upscale_is_closer(net, coded: Coded, sent: int, valid: tuple, recon: np.ndarray, padded: np.ndarray) -> bool:
    """Whether the bicubic upscale of the whole image sent is closer than `recon` to the image (the
    valid part of `padded`), in squared error: the encoder's upscale choice, one per image,
    summed tile by tile so that no whole-image float copy is made."""
    up_err = rec_err = 0
    for (t, l, h, w), up in _upscaled_tiles(net, coded, sent, valid, np.ones(len(coded.grid), bool)):
        x = padded[t:t + h, l:l + w].astype(np.int64)
        up_err += int(((up - x) ** 2).sum())
        rec_err += int(((recon[t:t + h, l:l + w] - x) ** 2).sum())
    return up_err < rec_err


def coding_net(model, exact: bool, device="cpu", x_coded: bool = False):
    """(the model a walk over the whole image runs, its thread setting), as modes._for_coding:
    x's decoder exact too where x itself is coded (a layered file's last layer)."""
    if exact:
        return X.ExactModel(model, x_coded, device), nullcontext()
    return model, M.coding_threads()


@torch.inference_mode()
def analyse(model, padded: np.ndarray, grid: list, plan, margin: int = MARGIN) -> list:
    """Per part of `grid`, the latents as the encoder's networks see them over the whole image
    (each part's window grown by `margin`, so latents at its border are not those of an
    edge-padded part), in walk order (the latent search's order too, which tiled.whole_values
    pastes): v (with a hyperprior) from the part's u, u, then each ẑ the plan sends."""
    H, W = padded.shape[:2]
    m, gaussian = model.multiple, model.cfg.posterior == "gaussian"
    margin = -(-margin // m) * m  # on every image's grid
    out = []
    for top, left, th, tw in grid:
        ph, pw = th + (-th % m), tw + (-tw % m)
        r0, c0 = max(0, top - margin), max(0, left - margin)
        x = M._tile_tensor(padded[r0:min(H, top + ph + margin), c0:min(W, left + pw + margin)])
        imgs = model.images(x)

        def core(lat):
            fh, fw = x.shape[-2] // lat.shape[-2], x.shape[-1] // lat.shape[-1]  # pixels per latent
            return M._posterior_mean(lat, gaussian)[..., (top - r0) // fh:(top - r0 + ph) // fh,
                                                    (left - c0) // fw:(left - c0 + pw) // fw]

        u = core(model.q_u(imgs[0]))
        latents = ([model.q_v(u)] if model.has_hyper else []) + [u]
        latents += [core(model.q_z(k, imgs[k])) for k in range(1, model.cfg.scales + 1)
                    if k <= plan.sent or plan.send_z]
        out.append(latents)
    return out
