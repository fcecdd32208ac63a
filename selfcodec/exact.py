"""The fast family's probability path in exact integer arithmetic, so that every machine
builds the same coding tables (Ballé, Johnston & Minnen 2019, "Integer networks for data
compression").

Activations are integers n standing for n / 2^ACT_FRAC, clipped to |n| <= ACT_LIMIT. A
layer's weights are integers of at most 12 bits at a power-of-two scale of its own, its bias
an integer at the product's scale. A convolution's sum then has integer terms and, checked per
output channel when a network is converted (`_check`), |sum| <= ACT_LIMIT * sum |w| + |b| <
2^53: float64 holds every partial sum exactly, so any summation order, blocking, thread count
or convolution algorithm gives the same integer. Requantizing divides by a power of two and
rounds (exact). GDN's square root and division are single IEEE operations on exact integers,
correctly rounded on every IEEE machine. Under `compute_in(torch.float32)` each convolution is
split into limbs whose sums stay below 2^24 (a check that the tables do not depend on the
float format); everything elementwise stays in float64.

What depends on a transcendental function (tanh of the mixture coupling, exp of a latent's
log-scale, 2^x of a learned step) is read from integer tables built once with Python's math
module and checked against a SHA-256 digest, as coding/fixedpoint.py does for the coder's own
tables: a platform whose libm rounds differently fails at import instead of writing files
that others cannot read.
"""

import copy
import hashlib
import math
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ACT_FRAC = 8
ACT_ONE = float(1 << ACT_FRAC)
ACT_LIMIT = float(1 << 16)  # activations within +-256
WEIGHT_LIMIT = float(1 << 11)  # weight numerators: 12-bit signed
EXACT_LIMIT = float(1 << 53)  # every integer below this is a float64

_DTYPE = [torch.float64]


@contextmanager
def compute_in(dtype):
    """Run the exact networks' convolutions in `dtype` (float64 or float32) inside this block."""
    _DTYPE.append(dtype)
    try:
        yield
    finally:
        _DTYPE.pop()


# ---- tables --------------------------------------------------------------------------------
COEF_GRID = 1024  # streams._COEF_GRID: the coupling coefficients' grid
TANH_END = 8 * (1 << ACT_FRAC)  # round(1024 tanh(t)) is 1024 from t = 4.2 on
LOG_SCALE_LIMIT = 6 * (1 << ACT_FRAC)  # latents' log-scales are clamped to [-6, 6]
TABLE_BITS = 40


def _round(x: float) -> int:
    return int(math.floor(x + 0.5))


TANH_TABLE = np.array([_round(COEF_GRID * math.tanh(i / ACT_ONE)) for i in range(TANH_END + 1)], np.int64)
EXP_TABLE = np.array([_round(2.0 ** TABLE_BITS * math.exp(i / ACT_ONE))
                      for i in range(-LOG_SCALE_LIMIT, LOG_SCALE_LIMIT + 1)], np.int64)
POW2_TABLE = np.array([_round(2.0 ** (TABLE_BITS + i / ACT_ONE)) for i in range(1 << ACT_FRAC)], np.int64)
TABLES_SHA256 = "ebb78da8e2c7a65ff1c861b8e455666bbb21908da7a02c9862a5fce2a58381f5"


def tables_digest() -> str:
    h = hashlib.sha256()
    for t in (TANH_TABLE, EXP_TABLE, POW2_TABLE):
        h.update(np.ascontiguousarray(t, dtype="<i8").tobytes())
    return h.hexdigest()


if tables_digest() != TABLES_SHA256:
    raise RuntimeError(f"selfcodec's exact-path tables do not match their digest ({tables_digest()}); this "
                       "platform's libm differs and its files would not be portable")
for _t in (TANH_TABLE, EXP_TABLE, POW2_TABLE):
    _t.setflags(write=False)


def grid_index(v: np.ndarray, limit: int) -> np.ndarray:
    """Values on the activation grid -> their integer numerators, clipped to +-limit."""
    return np.clip(np.rint(np.asarray(v, np.float64) * ACT_ONE), -limit, limit).astype(np.int64)


def exp_of(log_scale: np.ndarray) -> np.ndarray:
    """exp(log_scale) for log-scales on the activation grid within +-6 (float64, exact table values)."""
    return EXP_TABLE[grid_index(log_scale, LOG_SCALE_LIMIT) + LOG_SCALE_LIMIT] / 2.0 ** TABLE_BITS


def tanh_coef(raw: np.ndarray) -> np.ndarray:
    """tanh of coupling logits on the activation grid, on the coder's 1/1024 grid."""
    i = grid_index(raw, TANH_END)
    return np.sign(i) * TANH_TABLE[np.abs(i)] / float(COEF_GRID)


def step_from_log2(v: np.ndarray) -> np.ndarray:
    """A learned step 2^v (v rounded to the activation grid) on the 1/256 grid, at least 1/256."""
    i = np.rint(np.asarray(v, np.float64) * ACT_ONE).astype(np.int64)
    whole, frac = np.divmod(i, 1 << ACT_FRAC)
    scaled = np.ldexp(POW2_TABLE[frac].astype(np.float64), (whole + 8 - TABLE_BITS).astype(np.int64))
    return np.maximum(np.rint(scaled), 1.0) / 256.0


# ---- integer layers ------------------------------------------------------------------------
def _digits(n: torch.Tensor, bits: int) -> list:
    """Balanced base-2^bits digits of an integer tensor (|digit| <= 2^(bits-1)), lowest first."""
    out, base = [], float(1 << bits)
    while True:
        q = torch.round(n / base)
        out.append(n - q * base)
        if not bool((q != 0).any()):
            return out
        n = q


def _linear(op, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """op(x, w) of integer tensors, exact: in float64 directly (the bound was checked), in
    float32 as limbs of 7 bits whose partial sums stay below 2^24 (fan-in < 2^12:
    checked)."""
    dtype = _DTYPE[-1]
    if dtype == torch.float64:
        return op(x, w)
    fan_in = w[0].numel() if op is not F.conv_transpose2d else w[:, 0].numel()
    if fan_in * 64 * 64 >= 1 << 24:
        raise ValueError(f"a fan-in of {fan_in} is too large for exact float32 limbs")
    total = torch.zeros((), dtype=torch.float64)
    for i, xd in enumerate(_digits(x, 7)):
        for j, wd in enumerate(_digits(w, 7)):
            total = total + op(xd.to(dtype), wd.to(dtype)).double() * float(1 << (7 * (i + j)))
    return total


def _check(bound: torch.Tensor, what: str) -> None:
    if float(bound.max()) >= EXACT_LIMIT:
        raise ValueError(f"{what}: a sum may reach {float(bound.max()):.3g}, beyond exact float64 integers")


def _clip(n: torch.Tensor) -> torch.Tensor:
    return torch.round(n).clamp_(-ACT_LIMIT, ACT_LIMIT)


class IntConv(nn.Module):
    """A Conv2d or ConvTranspose2d on integer activations: weights w * 2^shift rounded to 12 bits."""

    def __init__(self, conv):
        super().__init__()
        self.transposed = isinstance(conv, nn.ConvTranspose2d)
        w = conv.weight.detach().double().cpu()
        peak = float(w.abs().max())
        self.shift = math.floor(math.log2(WEIGHT_LIMIT / peak)) if peak > 0 else 0
        while float(torch.round(w.abs().max() * 2.0 ** self.shift)) > WEIGHT_LIMIT:
            self.shift -= 1
        self.register_buffer("w", torch.round(w * 2.0 ** self.shift))
        b = conv.bias.detach().double().cpu() if conv.bias is not None else torch.zeros(w.shape[1 if self.transposed else 0])
        self.register_buffer("b", torch.round(b * 2.0 ** (self.shift + ACT_FRAC)).view(1, -1, 1, 1))
        self.kw = dict(stride=conv.stride, padding=conv.padding, dilation=conv.dilation, groups=conv.groups)
        if self.transposed:
            self.kw["output_padding"] = conv.output_padding
        per_out = self.w.abs().sum(dim=(0, 2, 3) if self.transposed else (1, 2, 3))
        _check(per_out * ACT_LIMIT + self.b.abs().flatten(), "convolution")

    def forward(self, x):
        op = F.conv_transpose2d if self.transposed else F.conv2d
        acc = _linear(lambda a, w: op(a, w, **self.kw), x, self.w) + self.b
        return _clip(acc / 2.0 ** self.shift)


class IntGDN(nn.Module):
    """GDN / IGDN on integer activations: N = B + sum_j G_ij x_j^2 in integers (G = gamma 2^g,
    B = beta 2^(g+16)), then x 2^((g+16)/2) / sqrt(N) (or x sqrt(N) / 2^((g+16)/2)): one
    correctly rounded square root and one division or product."""

    def __init__(self, gdn):
        super().__init__()
        self.inverse = gdn.inverse
        gamma = gdn.gamma.detach().double().cpu().abs()
        beta = gdn.beta.detach().double().cpu().abs() + 1e-6
        for g in range(40, -2, -2):
            G, B = torch.round(gamma * 2.0 ** g), torch.clamp(torch.round(beta * 2.0 ** (g + 16)), min=1.0)
            if float((G.sum(1) * ACT_LIMIT ** 2 + B).max()) < EXACT_LIMIT / 2:
                break
        _check(G.sum(1) * ACT_LIMIT ** 2 + B, "GDN")
        self.register_buffer("G", G.view(*G.shape, 1, 1))
        self.register_buffer("B", B.view(1, -1, 1, 1))
        self.half = 2.0 ** ((g + 16) // 2)

    def forward(self, x):
        r = torch.sqrt(_linear(F.conv2d, x * x, self.G) + self.B)
        return _clip(x * r / self.half if self.inverse else x * self.half / r)


def integer_copy(net: nn.Module) -> nn.Module:
    """A copy of a fast-family network whose convolutions and GDNs are the integer layers above;
    the rest (ReLU, pixel shuffles, concatenation) is exact on integers as it is."""
    from .fast import GDN

    def convert(m):
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            return IntConv(m)
        if isinstance(m, GDN):
            return IntGDN(m)
        if isinstance(m, (nn.ReLU, nn.PixelUnshuffle, nn.PixelShuffle)):
            return m
        if any(True for _ in m.parameters(recurse=False)):
            raise ValueError(f"{type(m).__name__} has no exact integer form")
        for name, child in m.named_children():
            setattr(m, name, convert(child))
        return m

    return convert(copy.deepcopy(net).cpu().float()).eval()


def to_grid(v: torch.Tensor) -> torch.Tensor:
    """Values -> integer activations (float64 integers), clipped."""
    return _clip(v.detach().double().cpu() * ACT_ONE)


def image_grid(img: torch.Tensor) -> torch.Tensor:
    """Pixels 0..255 -> the integer activations of their network input v / 127.5 - 1."""
    v = img.detach().double().cpu()
    return torch.round((2.0 * v - 255.0) * ACT_ONE / 255.0)


def from_grid(n: torch.Tensor) -> torch.Tensor:
    return n / ACT_ONE


# ---- the model's probability path ----------------------------------------------------------
def supports(model) -> bool:
    """Whether a model's probability networks have an exact integer form (the fast family)."""
    from .fast import FastSelfVAE

    return isinstance(model, FastSelfVAE)


def _integer_nets(model) -> dict:
    nets = model.__dict__.get("_integer_nets")
    if nets is None:  # converted once per loaded model
        nets = {"dec_0": integer_copy(model.dec_0), "prior": [integer_copy(p) for p in model.prior],
                "dec": [integer_copy(d) for d in model.dec]}
        model.__dict__["_integer_nets"] = nets
    return nets


def _on_device(model, device: torch.device):
    if device.type == "cpu":
        return model
    cache = model.__dict__.setdefault("_device_copies", {})
    if str(device) not in cache:
        cache[str(device)] = copy.deepcopy(model).to(device)
    return cache[str(device)]


class ExactModel:
    """A fast-family model whose probability path (p(images[0] | û), every p(z_k | ...), and
    every image's point estimate that the next prior reads) runs on its integer networks.
    The last decoder, p(x | ...), is exact too when x itself is coded (`exact_last`, lossless);
    otherwise it only shapes x̂ and runs in float on `device`. Everything else (the encoders,
    which only the encoder runs, and the configuration) is the model's own."""

    exact = True

    def __init__(self, model, exact_last: bool, device="cpu"):
        self._model, self.exact_last, self.device = model, exact_last, torch.device(device)
        self._nets = _integer_nets(model)

    def __getattr__(self, name):
        return getattr(self._model, name)

    def p_img0(self, u, features: bool = False):
        params, h = self._nets["dec_0"](to_grid(u), features=True)
        return (from_grid(params), from_grid(h)) if features else from_grid(params)

    def p_z(self, k, img_prev, prev_latent):
        mean, log_scale = from_grid(self._nets["prior"][k - 1](image_grid(img_prev), to_grid(prev_latent))).chunk(2, 1)
        return mean, log_scale.clamp(-6.0, 6.0)

    def p_img(self, k, z, img_prev, features: bool = False):
        if k == self.cfg.levels and not self.exact_last:
            net = _on_device(self._model, self.device)
            out = net.p_img(k, z.float().to(self.device), img_prev.float().to(self.device), features=True)
            params, h = (t.float().cpu() for t in out)
        else:
            prev = image_grid(img_prev)
            params, h = self._nets["dec"][k - 1](to_grid(z), prev, features=True)
            params, h = from_grid(params), from_grid(h)
            if self.cfg.transform == "downscale":  # bilinear weights 1/4, 3/4 of 1/256-grid values: exact
                params = self._model.offset_means(params, from_grid(prev), k)
        return (params, h) if features else params

    def u_code_prior(self):
        mean, log_scale = self._model.u_code_prior()
        return mean.detach().double(), from_grid(torch.round(log_scale.detach().double() * ACT_ONE))

    def coding_steps(self, level: int) -> list:
        return self._model.coding_steps(level, to_step=step_from_log2)


def dmol_point(params: torch.Tensor, c: int, k: int, how: str = "mean") -> torch.Tensor:
    """distributions.dmol_point in exact arithmetic, from the parameters as the coder quantizes
    them (means and coefficients on the 1/1024 grid, mixture weights as integers): in pixel
    units, 255 m = 255 mu + sum_j coef_j (2 v_j - 255) is a sum of exact products, and the
    weighted mean one correctly rounded division."""
    from .coding import fixedpoint as fp

    p = params.detach().double().cpu()
    b, _, h, w = p.shape
    n_coef = c * (c - 1) // 2
    mu = torch.clamp(torch.round(p[:, k:k + c * k] * COEF_GRID), -16 * COEF_GRID, 16 * COEF_GRID)
    mu = mu.reshape(b, c, k, h, w) / COEF_GRID
    coef = torch.from_numpy(tanh_coef(p[:, k + 2 * c * k:].numpy())).reshape(b, n_coef, k, h, w)
    lq = torch.clamp(torch.round(p[:, :k] * fp.LOGIT_GRID), -(1 << 24), 1 << 24).long()
    e = torch.tensor(fp.EXP_NEG_TABLE)[torch.clamp(lq.max(1, keepdim=True).values - lq, max=fp.EXP_NEG_MAX)]
    if how == "mode":
        e = torch.zeros_like(e).scatter_(1, e.argmax(1, keepdim=True), 1)
    wts = ((e << 22) // e.sum(1, keepdim=True)).double()  # <= 2^22, as streams._Params
    v = torch.zeros(b, c, h, w, dtype=torch.float64)
    for ch in range(c):
        s = 255.0 * mu[:, ch]
        base = ch * (ch - 1) // 2
        for j in range(ch):
            s = s + coef[:, base + j] * (2.0 * v[:, j:j + 1] - 255.0)
        v[:, ch] = torch.clamp(torch.round(((wts * s).sum(1) / wts.sum(1) + 255.0) / 2.0), 0.0, 255.0)
    return v
