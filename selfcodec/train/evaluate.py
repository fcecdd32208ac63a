"""Density evaluation: negative ELBO and the importance-weighted NLL in bits per dimension."""

import math

import numpy as np
import torch


def _crop(img: np.ndarray, multiple: int) -> np.ndarray:
    h, w = img.shape[:2]
    h2, w2 = h - h % multiple, w - w % multiple
    if not h2 or not w2:
        raise ValueError(f"an image of {h}x{w} is smaller than the model's multiple {multiple}")
    top, left = (h - h2) // 2, (w - w2) // 2
    return img[top:top + h2, left:left + w2]


@torch.inference_mode()
def eval_bpd(model, images: list, iw: int = 1, batch: int = 64, progress: bool = False) -> dict:
    """-ELBO (mean of single-sample terms) and -log p(x) by importance weighting with `iw` samples
    per image (log-mean-exp of the weights, Burda et al. 2015), both in bits per dimension.
    Images whose size is not a multiple of the model's are centre-cropped to one."""
    model.eval()
    groups = {}
    for img in images:
        c = _crop(img, model.multiple)
        groups.setdefault(c.shape, []).append(c)
    sums, dims_total, nll_bits = {}, 0, 0.0
    it = [(s, g[i:i + batch]) for s, g in groups.items() for i in range(0, len(g), batch)]
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="eval-bpd")
    for shape, chunk in it:
        x = torch.from_numpy(np.stack(chunk)).permute(0, 3, 1, 2).float()
        dims = x[0].numel()
        log_ws = []
        for s in range(iw):
            terms = model(x)
            log_ws.append(terms["log_w"].double())
            if s == 0:
                for k in ("nelbo", "re_x", "re_y", "kl_u", "kl_z"):
                    sums[k] = sums.get(k, 0.0) + float(terms[k].double().sum()) / math.log(2)
        log_p = torch.logsumexp(torch.stack(log_ws), 0) - math.log(iw)
        nll_bits += float(-log_p.sum()) / math.log(2)
        dims_total += dims * len(chunk)
    out = {k: v / dims_total for k, v in sums.items()}
    out["iw_nll"] = nll_bits / dims_total
    out["iw_samples"] = iw
    out["images"] = len(images)
    return out
