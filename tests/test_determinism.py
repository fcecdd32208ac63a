"""The decoder must rebuild the encoder's numbers exactly: whatever the thread count, in a
fresh process, and it must notice (not return a wrong image) when its numbers differ."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from selfcodec import api, zoo
from selfcodec.codec import container as C
from selfcodec.metrics import psnr
from selfcodec.errors import ChecksumError, FormatError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def threads():
    """Set torch's intra-op threads inside a test; restored afterwards."""
    old = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def files(tiny_model, natural):
    img = np.ascontiguousarray(natural[:32, :48])
    return {m: api.encode_report(img, m, 3, model=tiny_model) for m in ("rec2", "crec", "lossless")}


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def test_threads_do_not_change_pixels(tiny_model, files, threads):
    default = os.cpu_count() or 1
    for mode, rep in files.items():
        outs = []
        for n in (1, 2, default):
            threads(n)
            outs.append(api.decode(rep["data"], model=tiny_model, as_array=True))
        for o in outs:
            assert np.array_equal(o, rep["recon"]), mode


def test_encode_two_threads_decode_one(tiny_model, natural, threads):
    img = np.ascontiguousarray(natural[16:48, :32])
    threads(2)
    reps = {m: api.encode_report(img, m, 2, model=tiny_model) for m in ("rec2", "cgen")}
    threads(1)
    for m, rep in reps.items():
        assert np.array_equal(api.decode(rep["data"], model=tiny_model, as_array=True), rep["recon"]), m


def test_fresh_process_decodes_same_pixels(tiny_model, files, tmp_path):
    paths = []
    for mode, rep in files.items():
        p = tmp_path / f"{mode}.svae"
        p.write_bytes(rep["data"])
        paths.append(str(p))
    code = (
        "import sys, hashlib, numpy as np\n"
        "from selfcodec import api\n"
        "for p in sys.argv[2:]:\n"
        "    a = api.decode(open(p, 'rb').read(), model=sys.argv[1], as_array=True)\n"
        "    print(hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    res = subprocess.run([sys.executable, "-c", code, tiny_model, *paths], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == [_digest(rep["recon"]) for rep in files.values()]


class _Nudged:
    """Within the block, one element of one weight of the (cached) model is off by `delta`;
    zoo.load still reports the original weights hash, as if this machine computed the
    model's numbers differently from the encoder's."""

    def __init__(self, path: str, tensor: str, delta: float):
        self.net = zoo.load(path)[0]
        self.t, self.delta = self.net.state_dict()[tensor], delta

    def __enter__(self):
        self.old = self.t.view(-1)[0].item()
        with torch.no_grad():
            self.t.view(-1)[0] += self.delta

    def __exit__(self, *exc):
        with torch.no_grad():
            self.t.view(-1)[0] = self.old


@pytest.mark.parametrize("mode", ["rec2", "crec", "lossless"])
def test_slightly_different_numbers_are_caught(tiny_model, files, mode):
    """Nudge one weight (one tensor at a time, under the original hash): the decoder
    raises ChecksumError (or FormatError from a stream it cannot parse) or, where the nudge is
    absorbed by the quantized coding tables, returns the predicted pixels: exactly, or in a lossy
    file with exact tables (which guards the coded integers, not x̂'s rounding) to within 40 dB."""
    rep = files[mode]
    names = [k for k in zoo.load(tiny_model)[0].state_dict() if k.endswith((".b", ".g"))][::3]
    # (rec2's exact tables absorb every nudge of 1e-3 on this tiny model: its coded integers do
    # not change, only x̂'s rounding may; a larger one must still be caught)
    delta = 0.05 if mode == "rec2" else 1e-3
    caught = 0
    for tensor in names:
        with _Nudged(tiny_model, tensor, delta):
            try:
                out = api.decode(rep["data"], model=tiny_model, as_array=True)
            except ChecksumError as e:
                msg = str(e)
                assert "\n" not in msg
                assert "CRC" in msg and "model" in msg  # names the likely cause, not only "damaged"
                caught += 1
            except FormatError as e:
                assert "\n" not in str(e)
                caught += 1
            else:
                if mode == "lossless" or C.peek_header(rep["data"]).coder_version != C.CODER_VERSION:
                    assert np.array_equal(out, rep["recon"]), f"{tensor}: wrong pixels returned without an error"
                else:
                    assert psnr(out, rep["recon"]) > 40, f"{tensor}: other pixels returned without an error"
    assert caught > 0, f"no nudge of {delta} in {len(names)} tensors changed the decoded {mode} image"


def test_big_perturbation_never_returns_wrong_pixels(tiny_model, files):
    """Every weight off by 1e-3: decoding either fails with a CodecError or gives the right image."""
    net = zoo.load(tiny_model)[0]
    saved = {k: v.clone() for k, v in net.state_dict().items()}
    try:
        with torch.no_grad():
            for p in net.parameters():
                p.add_(1e-3)
        for mode, rep in files.items():
            with pytest.raises((ChecksumError, FormatError)):
                api.decode(rep["data"], model=tiny_model, as_array=True)
    finally:
        net.load_state_dict(saved)
    assert np.array_equal(api.decode(files["rec2"]["data"], model=tiny_model, as_array=True), files["rec2"]["recon"])


def _wide(tmp_path_factory, name, seed, **overrides):
    """A random-init model at the shipped default width, saved to a file."""
    from selfcodec.model.checkpoint import save_model
    from selfcodec.model.registry import build_model, make_config
    from selfcodec.nn.blocks import data_dependent_init

    torch.manual_seed(seed)
    m = build_model(make_config("selfvae-downscale", **overrides))
    data_dependent_init(m, torch.randint(0, 256, (2, 3, 32, 32)).float())
    if overrides.get("rd_lambdas"):  # learned steps away from any grid
        with torch.no_grad():
            m.rd_log2_step.add_(torch.rand_like(m.rd_log2_step) * 0.7 - 0.35)
    path = tmp_path_factory.mktemp(name) / f"{name}.safetensors"
    save_model(m, path)
    return path


@pytest.fixture(scope="module")
def wide_model(tmp_path_factory):
    """A model at the shipped default width: its convolutions take the multi-threaded oneDNN
    paths whose last bits depend on the thread count (the tiny models' do not)."""
    return _wide(tmp_path_factory, "wide", 7)


@pytest.mark.parametrize("mode", ["crec", "lossless"])
def test_default_width_model_encode_two_threads_decode_one(wide_model, natural, threads, mode):
    img = np.ascontiguousarray(natural[:48, :64])
    threads(2)
    rep = api.encode_report(img, mode, 3, model=wide_model)
    threads(1)
    assert np.array_equal(api.decode(rep["data"], model=wide_model, as_array=True), rep["recon"])
    assert torch.get_num_threads() == 1  # coding restores the caller's setting


@pytest.fixture(scope="module")
def wide_rd_model(tmp_path_factory):
    """A rate-distortion model at the default width."""
    return _wide(tmp_path_factory, "wide-rd", 8, rd_lambdas=(0.002, 0.004, 0.008, 0.016, 0.032))


@pytest.mark.parametrize("mode", ["rec2", "crec"])
def test_default_width_rd_model_encode_two_threads_decode_one(wide_rd_model, natural, threads, mode):
    img = np.ascontiguousarray(natural[:48, :64])
    for level in (1, 5):
        threads(2)
        rep = api.encode_report(img, mode, level, model=wide_rd_model)
        threads(1)
        assert np.array_equal(api.decode(rep["data"], model=wide_rd_model, as_array=True), rep["recon"]), level


@pytest.mark.parametrize("mode", ["rec1", "rec2"])
def test_shipped_default_decodes_alike_on_any_thread_count(threads, mode):
    """The default model's float synthesis on the bundled photo: the same x̂ from 1 and 2 threads
    (oneDNN's convolutions, whose sums depend on the thread count, gave a few pixels off)."""
    from conftest import ASSET

    img = np.asarray(Image.open(ASSET).convert("RGB"))
    threads(2)
    rep = api.encode_report(img, mode, 3)
    threads(1)
    assert np.array_equal(api.decode(rep["data"], as_array=True), rep["recon"])
