"""Start a fast-family model from another's weights where the shapes differ: narrower, each layer keeps the first
channels of every width that shrank (a trained network's channels are in no particular order,
so this is a random pruning, which training then repairs far sooner than a fresh start).

Only widths of hidden features may shrink (ch, mid_ch, head_ch); the latents, the images and
the likelihood heads keep their sizes. Two layers read a concatenation of two hidden feature
maps or of features and an image, and take the kept channels of each part:
- a decoder's `mix` (its features, then the coarser image's space-to-depth);
- a prior's `head.0` (the image path's features, then the latent path's).

A layer whose kernel grew (a larger head_k) starts as the smaller kernel at the centre of the
larger one, zeros around it, so the model computes what it did.
"""

import re

import torch

# parameter name -> how its input channels (dim 1) split into concatenated parts
_MIX = re.compile(r"^dec\.\d+\.mix\.0\.weight$")
_PRIOR_HEAD = re.compile(r"^prior\.\d+\.head\.0\.weight$")


def _concat_index(name: str, wide: torch.Tensor, narrow_shape) -> torch.Tensor | None:
    """Input channels to keep for a layer that reads a concatenation, else None."""
    w_out, w_in = wide.shape[:2]
    n_out, n_in = narrow_shape[:2]
    if _MIX.match(name):  # [features (as wide as the output), image]: the image part keeps all
        image = w_in - w_out
        if n_in - n_out != image:
            raise ValueError(f"{name}: the image part changed size ({image} -> {n_in - n_out})")
        return torch.cat([torch.arange(n_out), w_out + torch.arange(image)])
    if _PRIOR_HEAD.match(name):  # [image path (output width), latent path (output width)]
        return torch.cat([torch.arange(n_out), w_out + torch.arange(n_out)])
    return None


def narrow_tensor(name: str, wide: torch.Tensor, narrow_shape) -> torch.Tensor:
    """`wide` cut to `narrow_shape`: the first entries of each dimension that shrank (the parts'
    kept channels for a concatenating layer's input)."""
    if len(wide.shape) == 4 and wide.shape[:2] == tuple(narrow_shape[:2]) and all(
            n >= w and (n - w) % 2 == 0 for n, w in zip(narrow_shape[2:], wide.shape[2:])):
        return _centred(wide, narrow_shape)
    if len(wide.shape) != len(narrow_shape) or any(n > w for n, w in zip(narrow_shape, wide.shape)):
        raise ValueError(f"{name}: {tuple(wide.shape)} cannot be narrowed to {tuple(narrow_shape)}")
    out = wide
    for d, n in enumerate(narrow_shape):
        if n == wide.shape[d]:
            continue
        index = _concat_index(name, wide, narrow_shape) if d == 1 else None
        out = out.index_select(d, index if index is not None else torch.arange(n))
    return out


def _centred(kernel: torch.Tensor, shape) -> torch.Tensor:
    """A kernel placed at the centre of a larger one of `shape`, zeros around it."""
    out = kernel.new_zeros(shape)
    dh, dw = (shape[2] - kernel.shape[2]) // 2, (shape[3] - kernel.shape[3]) // 2
    out[:, :, dh:dh + kernel.shape[2], dw:dw + kernel.shape[3]] = kernel
    return out


def narrow_state(wide: dict, model: torch.nn.Module) -> dict:
    """A state dict for `model` from a wider model's tensors (names must match; shapes may
    only shrink). Tensors `model` has and `wide` lacks are left out (load with strict=False)."""
    state = {}
    for name, t in model.state_dict().items():
        if name in wide:
            state[name] = narrow_tensor(name, wide[name], t.shape).to(t.dtype)
    return state
