"""The fast family's probability path in exact integer arithmetic, so that every machine
builds the same coding tables (Ballé, Johnston & Minnen 2019, "Integer networks for data
compression").

Activations are integers n standing for n / 2^ACT_FRAC (1/1024), clipped to |n| <= ACT_LIMIT
(values within +-256). A layer's weights are integers of at most 16 bits at a power-of-two scale
of its own, its bias an integer at the product's scale (12-bit weights cost 2.3 % in a DenseNet
model's lossless files, 16-bit ones 0.14 %). A convolution's sum then has integer terms and, checked per
output channel when a network is converted (`_check`), |sum| <= ACT_LIMIT * sum |w| + |b| <
2^53: float64 holds every partial sum exactly, so any summation order, blocking, thread count
or convolution algorithm gives the same integer. Requantizing divides by a power of two and
rounds (exact). GDN's square root and division are single IEEE operations on exact integers,
correctly rounded on every IEEE machine. Under `compute_in(torch.float32)` each convolution is
split into limbs whose sums stay below 2^24 (a check that the tables do not depend on the
float format); everything elementwise stays in float64.

What depends on a transcendental function (tanh of the mixture coupling, exp of a latent's
log-scale, 2^x of a learned step) is read from integer tables built once with Python's math
module and checked against a SHA-256 digest, as entropy/fixedpoint.py does for the coder's own
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

ACT_FRAC = 10
ACT_ONE = float(1 << ACT_FRAC)
ACT_LIMIT = float(1 << 18)  # activations within +-256
WEIGHT_BITS = 15
WEIGHT_LIMIT = float(1 << WEIGHT_BITS)  # weight numerators: 16-bit signed
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
# the DenseNet networks' activations on the activation grid: 1 - exp(-t) (ELU's negative side,
# negated) and sigmoid(t) (the channel attention's gate), both scaled by 2^ACT_FRAC
ACT_TABLE_END = 8 << ACT_FRAC  # both are within half a grid step of their limits beyond t = 7.7
ELU_TABLE = np.array([_round(ACT_ONE * (1.0 - math.exp(-i / ACT_ONE))) for i in range(ACT_TABLE_END + 1)], np.int64)
SIGMOID_TABLE = np.array([_round(ACT_ONE / (1.0 + math.exp(-i / ACT_ONE))) for i in range(ACT_TABLE_END + 1)], np.int64)
TABLES_SHA256 = "969f95dff84466484af17ab2ed038a3a0e002091e8ea6f5308f8902b7fdffa5d"
_TABLES = (TANH_TABLE, EXP_TABLE, POW2_TABLE, ELU_TABLE, SIGMOID_TABLE)


def tables_digest() -> str:
    h = hashlib.sha256()
    for t in _TABLES:
        h.update(np.ascontiguousarray(t, dtype="<i8").tobytes())
    return h.hexdigest()


if tables_digest() != TABLES_SHA256:
    raise RuntimeError(f"selfcodec's exact-path tables do not match their digest ({tables_digest()}); this "
                       "platform's libm differs and its files would not be portable")
for _t in _TABLES:
    _t.setflags(write=False)
_ELU_T, _SIGMOID_T = torch.tensor(ELU_TABLE, dtype=torch.float64), torch.tensor(SIGMOID_TABLE, dtype=torch.float64)


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


def _linear(op, x: torch.Tensor, w: torch.Tensor, transposed: bool = False) -> torch.Tensor:
    """op(x, w) of integer tensors, exact: in float64 directly (the bound was checked), in
    float32 as limbs of 7 bits whose partial sums stay below 2^24 (fan-in < 2^12:
    checked)."""
    dtype = _DTYPE[-1]
    if dtype == torch.float64:
        return op(x, w)
    fan_in = w[:, 0].numel() if transposed else w[0].numel()  # (a transposed conv's weight is (in, out, kh, kw))
    if fan_in * 64 * 64 >= 1 << 24:
        raise ValueError(f"a fan-in of {fan_in} is too large for exact float32 limbs")
    total = torch.zeros((), dtype=torch.float64)
    for i, xd in enumerate(_digits(x, 7)):
        for j, wd in enumerate(_digits(w, 7)):
            total = total + op(xd.to(dtype), wd.to(dtype)).double() * float(1 << (7 * (i + j)))
    return total


STRIP_BYTES = 4 << 20  # im2col scratch per strip (measured on Zen 4: 1-8 MB alike on one thread, 4 MB best on two)


def conv2d_exact(x: torch.Tensor, w: torch.Tensor, **kw) -> torch.Tensor:
    """F.conv2d of integer float64 tensors, a few output rows at a time where the kernel is
    wider than 1x1: torch's float64 convolution unfolds the whole input first (no oneDNN for
    float64), and strips whose unfolded rows stay in cache run about twice as fast. The sums are
    exact integers, so any grouping of them gives the same result."""
    k_h, k_w = w.shape[-2:]
    pad = kw.get("padding", 0)
    plain = (kw.get("stride", 1) in (1, (1, 1)) and kw.get("dilation", 1) in (1, (1, 1))
             and kw.get("groups", 1) == 1 and isinstance(pad, (int, tuple)) and x.dtype == torch.float64)
    if not plain or k_h * k_w == 1 or x.shape[0] != 1:
        return F.conv2d(x, w, **kw)
    p_h, p_w = (pad, pad) if isinstance(pad, int) else pad
    row_bytes = x.shape[1] * k_h * k_w * (x.shape[3] + 2 * p_w) * 8
    rows = max(1, STRIP_BYTES // row_bytes)
    out_h = x.shape[2] + 2 * p_h - k_h + 1
    if rows >= out_h:
        return F.conv2d(x, w, **kw)
    xp = F.pad(x, (p_w, p_w, p_h, p_h))
    bias = kw.get("bias")
    return torch.cat([F.conv2d(xp[:, :, i : i + rows + k_h - 1], w, bias) for i in range(0, out_h, rows)], 2)


def _check(bound: torch.Tensor, what: str) -> None:
    if float(bound.max()) >= EXACT_LIMIT:
        raise ValueError(f"{what}: a sum may reach {float(bound.max()):.3g}, beyond exact float64 integers")


def _clip(n: torch.Tensor) -> torch.Tensor:
    return torch.round(n).clamp_(-ACT_LIMIT, ACT_LIMIT)


def _clip_(n: torch.Tensor) -> torch.Tensor:
    """_clip in place, for a temporary."""
    return n.round_().clamp_(-ACT_LIMIT, ACT_LIMIT)


class IntConv(nn.Module):
    """A convolution (or transposed one) on integer activations: weights w * 2^shift rounded to
    16 bits; kw: stride, padding, ... as F.conv2d / F.conv_transpose2d take them."""

    @classmethod
    def of(cls, conv):
        """From an nn.Conv2d / nn.ConvTranspose2d, or a weight-normalised WNConv2d / WNConvT2d."""
        from ..nn.blocks import WNConv2d, WNConvT2d

        if isinstance(conv, (WNConv2d, WNConvT2d)):
            transposed = isinstance(conv, WNConvT2d)
            kw = dict(stride=2, padding=1) if transposed else dict(stride=conv.stride, padding=conv.pad)
            return cls(_wn_weight(conv), conv.b.detach().double().cpu(), transposed, kw)
        transposed = isinstance(conv, nn.ConvTranspose2d)
        kw = dict(stride=conv.stride, padding=conv.padding, dilation=conv.dilation, groups=conv.groups)
        if transposed:
            kw["output_padding"] = conv.output_padding
        bias = conv.bias.detach().double().cpu() if conv.bias is not None else None
        return cls(conv.weight.detach().double().cpu(), bias, transposed, kw)

    def __init__(self, w: torch.Tensor, bias, transposed: bool, kw: dict):
        super().__init__()
        self.transposed, self.kw = transposed, kw
        peak = float(w.abs().max())
        # the largest power-of-two scale that keeps every weight within WEIGHT_LIMIT, from frexp's
        # exponent and exact comparisons (not log2, which libm may round either way at a power of two)
        self.shift = WEIGHT_BITS - math.frexp(peak)[1] if peak > 0 else 0
        while peak > 0 and _round(peak * 2.0 ** (self.shift + 1)) <= WEIGHT_LIMIT:
            self.shift += 1
        while _round(peak * 2.0 ** self.shift) > WEIGHT_LIMIT:
            self.shift -= 1
        self.register_buffer("w", torch.round(w * 2.0 ** self.shift))
        b = bias if bias is not None else torch.zeros(w.shape[1 if transposed else 0], dtype=torch.float64)
        self.register_buffer("b", torch.round(b * 2.0 ** (self.shift + ACT_FRAC)).view(1, -1, 1, 1))
        per_out = self.w.abs().sum(dim=(0, 2, 3) if self.transposed else (1, 2, 3))
        _check(per_out * ACT_LIMIT + self.b.abs().flatten(), "convolution")

    def rows(self, keep: torch.Tensor) -> "IntConv":
        """This convolution with only the output channels `keep` (same scale: the same integers)."""
        return self._part("rows", self.w[keep], self.b[:, keep])

    def cols(self, keep: torch.Tensor) -> "IntConv":
        """This convolution reading only the input channels `keep`: for inputs whose other
        channels are zero, the same integers."""
        return self._part("cols", self.w[:, keep], self.b)

    def _part(self, what: str, w: torch.Tensor, b: torch.Tensor) -> "IntConv":
        """A copy with part of the weights, at the same scale (its sums were checked whole)."""
        if self.transposed or self.kw.get("groups", 1) != 1:
            raise ValueError(f"{what}() is for plain convolutions")
        part = copy.copy(self)
        part._buffers = {"w": w, "b": b}
        return part

    @staticmethod
    def side_by_side(convs: list, x: torch.Tensor) -> list:
        """[conv(x) for conv in convs] (plain convolutions of the same kw) in one float64
        convolution: each output channel's sum is exact on its own, so the same integers."""
        if any(c.transposed or c.kw != convs[0].kw for c in convs):
            raise ValueError("side_by_side is for plain convolutions of one kind")
        accs = _linear(lambda a, w: conv2d_exact(a, w, **convs[0].kw), x, torch.cat([c.w for c in convs]))
        outs = accs.split([c.w.shape[0] for c in convs], 1)
        return [_clip_(acc.add(c.b).mul_(2.0 ** -c.shift)) for acc, c in zip(outs, convs)]

    def forward(self, x):
        op = F.conv_transpose2d if self.transposed else conv2d_exact
        acc = _linear(lambda a, w: op(a, w, **self.kw), x, self.w, self.transposed)
        # in place on the fresh sum: these run over whole images in float64; a power of two's
        # reciprocal is exact, so the product is the quotient
        return _clip_(acc.add_(self.b).mul_(2.0 ** -self.shift))


class IntGDN(nn.Module):
    """GDN / IGDN on integer activations: N = B + sum_j G_ij x_j^2 in integers (G = gamma 2^g,
    B = beta 2^(g+2F), F = ACT_FRAC), then x 2^((g+2F)/2) / sqrt(N) (or x sqrt(N) / 2^((g+2F)/2)): one
    correctly rounded square root and one division or product."""

    def __init__(self, gdn):
        super().__init__()
        self.inverse = gdn.inverse
        gamma = gdn.gamma.detach().double().cpu().abs()
        beta = gdn.beta.detach().double().cpu().abs() + 1e-6
        for g in range(40, -2, -2):
            G, B = torch.round(gamma * 2.0 ** g), torch.clamp(torch.round(beta * 2.0 ** (g + 2 * ACT_FRAC)), min=1.0)
            if float((G.sum(1) * ACT_LIMIT ** 2 + B).max()) < EXACT_LIMIT / 2:
                break
        _check(G.sum(1) * ACT_LIMIT ** 2 + B, "GDN")
        self.register_buffer("G", G.view(*G.shape, 1, 1))
        self.register_buffer("B", B.view(1, -1, 1, 1))
        self.half = 2.0 ** ((g + 2 * ACT_FRAC) // 2)

    def forward(self, x):
        r = torch.sqrt(_linear(conv2d_exact, x * x, self.G) + self.B)
        return _clip_(x * r / self.half if self.inverse else x * self.half / r)


def _wn_weight(m) -> torch.Tensor:
    """A weight-normalised layer's weight g v / |v|, each output channel's norm from math.fsum
    (a correctly rounded sum: the same on every machine, unlike a vectorised one)."""
    v = m.v.detach().double().cpu().numpy()
    vo = np.moveaxis(v, m.out_dim, 0).reshape(v.shape[m.out_dim], -1)
    norm = np.array([math.sqrt(math.fsum(row * row) + 1e-12) for row in vo])
    shape = [1] * v.ndim
    shape[m.out_dim] = -1
    return torch.from_numpy(v / norm.reshape(shape) * m.g.detach().double().cpu().numpy().reshape(shape))


def elu(x: torch.Tensor) -> torch.Tensor:
    """ELU of integer activations (1 - exp(-t) from ELU_TABLE on the negative side)."""
    return torch.where(x < 0, -_ELU_T[(-x).clamp(0, ACT_TABLE_END).long()], x)


def sigmoid(x: torch.Tensor) -> torch.Tensor:
    """sigmoid(t) * 2^ACT_FRAC of integer activations (symmetric: 1 - sigmoid(-t) below zero)."""
    s = _SIGMOID_T[x.abs().clamp(0, ACT_TABLE_END).long()]
    return torch.where(x < 0, ACT_ONE - s, s)


class IntELU(nn.Module):
    def forward(self, x):
        return elu(x)


class IntChannelAttention(nn.Module):
    """nets.ChannelAttention: the mean (one correctly rounded division of an exact sum), the
    bottleneck, the gate from the sigmoid table, x * gate rounded back to the grid."""

    def __init__(self, ca):
        super().__init__()
        self.fc1, self.fc2 = IntConv.of(ca.fc1), IntConv.of(ca.fc2)

    def forward(self, x):
        s = torch.round(x.sum(dim=(2, 3), keepdim=True) / float(x.shape[2] * x.shape[3]))
        return torch.round(x * sigmoid(self.fc2(elu(self.fc1(s)))) / ACT_ONE)


class IntDenseBlock(nn.Module):
    def __init__(self, block):
        super().__init__()
        self.layers = nn.ModuleList(IntConv.of(m) for m in block.layers)
        self.fuse, self.ca = IntConv.of(block.fuse), IntChannelAttention(block.ca)

    def forward(self, x):  # as nets.DenseBlock
        feats = [x]
        for layer in self.layers:
            feats.append(elu(layer(torch.cat(feats, 1))))
        return _clip_(x + self.ca(self.fuse(torch.cat(feats, 1))))


class IntDown(nn.Module):
    def __init__(self, down, convert):
        super().__init__()
        self.stem, self.body = IntConv.of(down.stem), convert(down.body)

    def forward(self, x):  # as nets.Down
        return self.body(elu(self.stem(x)))


def integer_copy(net: nn.Module) -> nn.Module:
    """A copy of a network whose convolutions (weight-normalised or not), GDNs, ELUs and dense
    blocks are the integer layers above; the rest (ReLU, pixel shuffles, concatenation) is exact
    on integers as it is."""
    from ..nn.gdn import GDN
    from ..nn.blocks import DenseBlock, Down, WNConv2d, WNConvT2d

    def convert(m):
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, WNConv2d, WNConvT2d)):
            return IntConv.of(m)
        if isinstance(m, GDN):
            return IntGDN(m)
        if isinstance(m, nn.ELU):
            return IntELU()
        if isinstance(m, DenseBlock):
            return IntDenseBlock(m)
        if isinstance(m, Down):
            return IntDown(m, convert)
        if isinstance(m, nn.ReLU):
            return nn.ReLU(inplace=True)  # (its input is always the integer layer's fresh output)
        if isinstance(m, (nn.PixelUnshuffle, nn.PixelShuffle)):
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
    """Whether the codec codes a model's files under exact tables: every model of both families
    has an integer form (benchmarks and tests patch this to write float-table files, coder version 3)."""
    return True


def _per_weights(model, slot: str, build):
    """build(model), kept on the model once per state of its weights (the version counters of its
    tensors change with every in-place update, so changed weights are never served stale)."""
    key = tuple(t._version for t in model.state_dict().values())
    cached = model.__dict__.get(slot)
    if cached is None or cached[0] != key:
        cached = model.__dict__[slot] = (key, build(model))
    return cached[1]


def _convert(model) -> dict:
    nets = {}
    for name in model.table_nets():  # the family says which networks' outputs define tables
        net = getattr(model, name)
        nets[name] = [integer_copy(m) for m in net] if isinstance(net, nn.ModuleList) else integer_copy(net)
    return nets


def _on_device(model, device: torch.device):
    if device.type == "cpu":
        return model
    return _per_weights(model, f"_on_{device}", lambda m: copy.deepcopy(m).to(device))


class IntArithmetic:
    """The integer arithmetic of the probability path, in the shape of base.FloatArithmetic:
    every family writes its table-defining networks once, and this runs them on integers."""

    def __init__(self, nets: dict):
        self.nets = nets

    def net(self, model, name):
        return self.nets[name]

    image = staticmethod(image_grid)
    latent = staticmethod(to_grid)
    out = staticmethod(from_grid)

    @staticmethod
    def param(t):
        return t.detach().double()  # (float64 sums of a float32 parameter and a grid value: exact)

    @staticmethod
    def grid(t):
        return from_grid(to_grid(t))

    @staticmethod
    def coupling(raw):  # the coder's own coefficients (DMoL.arrays with tanh_coef), float64
        return torch.from_numpy(tanh_coef(raw.detach().double().cpu().numpy()))


FLOAT_THREADS = 2  # torch threads of the float synthesis of x̂ and its filter, whatever the caller's count


@contextmanager
def _float_threads(onednn: bool):
    """torch on FLOAT_THREADS threads inside the block, so x̂ is the same whatever
    torch.set_num_threads says: oneDNN splits a convolution's sums by thread count (x̂ differs in
    a few pixels between 1 and 2 threads). Without `onednn`, torch's own convolutions (the same
    for any count and any window of the image; oneDNN on 2 threads is not for the x decoder's
    transposed ones, whose split follows the window's size)."""
    before, dnn = torch.get_num_threads(), torch.backends.mkldnn.enabled
    torch.set_num_threads(FLOAT_THREADS)
    torch.backends.mkldnn.enabled = onednn and dnn
    try:
        yield
    finally:
        torch.set_num_threads(before)
        torch.backends.mkldnn.enabled = dnn


class ExactModel:
    """A model whose probability path (p(images[0] | û), every p(z_k | ...), and every image's
    point estimate that the next prior reads) runs on its integer networks. The last decoder,
    p(x | ...), is exact too when x itself is coded (`exact_last`, lossless); otherwise it only
    shapes x̂ and runs in float on `device`. Everything else (the encoders, which only the
    encoder runs, and the configuration) is the model's own. The glue between the networks is
    each family's _p_img0 / _p_z / _p_img, in IntArithmetic."""

    exact = True

    def __init__(self, model, exact_last: bool, device="cpu"):
        self._model, self.exact_last, self.device = model, exact_last, torch.device(device)
        self._nets = _per_weights(model, "_integer_nets", _convert)
        self._arith = IntArithmetic(self._nets)

    def __getattr__(self, name):
        return getattr(self._model, name)

    def p_img0(self, u, features: bool = False):
        params, h = self._model._p_img0(self._arith, u)
        return (params, h) if features else params

    def p_z(self, k, img_prev, prev_latent):
        return self._model._p_z(self._arith, k, img_prev, prev_latent)

    def p_img(self, k, z, img_prev, features: bool = False):
        if k == self.cfg.scales and not self.exact_last:
            net = _on_device(self._model, self.device)
            with _float_threads(onednn=False):
                out = net.p_img(k, z.float().to(self.device), img_prev.float().to(self.device), features=True)
            params, h = (t.float().cpu() for t in out)
        else:  # (the means' upscale has dyadic weights, exact on grid values)
            params, h = self._model._p_img(self._arith, k, z, img_prev)
        return (params, h) if features else params

    def refine(self, xhat, h):
        """The family's filter on x̂ (float: it shapes x̂, no table), the same for any thread count
        and window (oneDNN: 3-5x faster than torch's own convolutions on a few channels at full
        resolution, which unfold 9x the image)."""
        if not (self.cfg.refine or self.cfg.refine_half):
            return xhat
        with _float_threads(onednn=True):
            return self._model.refine(xhat.contiguous(memory_format=torch.channels_last),
                                      h.contiguous(memory_format=torch.channels_last)).contiguous()

    def stage_params(self, k, stage, params, h, img, img_prev):
        """The family's stage parameters on the integer context nets (phase planes are 0 or 1;
        the nearest upscale of the coarser image copies grid values)."""
        return self._model._stage_params(self._arith, k, stage, params, h, img, img_prev)

    def staged_image(self, k, params, h, img_prev, draw):
        # the family's own, with this class's stage_params
        return type(self._model).staged_image(self, k, params, h, img_prev, draw)

    def u_code_prior(self, v=None, size=None):
        return self._model._u_code_prior(self._arith, v, size)

    def latent_context(self, k: int):
        """The model's latent context of û (k = 0) or ẑ_k on its integer nets, or None."""
        if self._model.latent_context(k) is None:
            return None
        return _IntContext(self._nets["u_context"] if k == 0 else self._nets["z_context"][k - 1])

    def v_code_prior(self):
        return self._model._v_code_prior(self._arith)

    def coding_steps(self, level: int) -> list:
        return self._model.coding_steps(level, to_step=step_from_log2)

    def v_coding_steps(self, level: int):
        return self._model.v_coding_steps(level, to_step=step_from_log2)


class _IntContext:
    """A latent context (entropy/channel_context.py, entropy/checkerboard.py) whose nets run on
    integer activations."""

    def __init__(self, ctx):
        self.ctx, self.parts, self.join = ctx, ctx.parts, ctx.join

    def part_prior(self, i, mean, log_scale, known):
        return self.ctx.part_prior(i, mean, log_scale, known, run=lambda net, x: from_grid(net(to_grid(x))))


def dmol_point(params: torch.Tensor, c: int, k: int, how: str = "mean") -> torch.Tensor:
    """entropy.dmol.dmol_point in exact arithmetic, from the parameters as the coder quantizes
    them (means and coefficients on the 1/1024 grid, mixture weights as integers): in pixel
    units, 255 m = 255 mu + sum_j coef_j (2 v_j - 255) is a sum of exact products, and the
    weighted mean one correctly rounded division."""
    from ..entropy import fixedpoint as fp

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
