"""The decoder's smoothing of x̂ (codec/smoothing.py): the model's table decides it, the encoder
predicts it, and the pixels do not depend on the tiling or the thread count."""

from fractions import Fraction

import numpy as np
import pytest
import torch

from selfcodec import api, zoo
from selfcodec.codec import container as C
from selfcodec.codec import plans as P
from selfcodec.codec import smoothing as SM
from selfcodec.errors import CodecError
from selfcodec.model import modelfile

from tests.conftest import build_tiny

TABLE = {"rec1": (30.0, 20.0, 10.0), "rec2": (40.0, 20.0, 0.0), "crec": (12.0, 12.0, 12.0)}


@pytest.fixture(scope="module")
def smoothed(model_dir) -> str:
    """The tiny fast model with a hyperprior, smoothing x̂ as TABLE says."""
    return str(build_tiny(model_dir / "tiny-fast-smooth.safetensors", "selfvae-downscale", seed=9, network="fast",
                          rd_lambdas=(0.005, 0.01, 0.02), u_hyper=4, up_base="bicubic", smooth=TABLE))


@pytest.fixture(scope="module")
def plain(model_dir) -> str:
    """The same weights without the table."""
    return str(build_tiny(model_dir / "tiny-fast-smooth-off.safetensors", "selfvae-downscale", seed=9, network="fast",
                          rd_lambdas=(0.005, 0.01, 0.02), u_hyper=4, up_base="bicubic"))


def test_sigma_follows_the_table_mode_and_level(smoothed):
    net = zoo.load(smoothed)[0]
    at = lambda mode, level: SM.sigma_at(net, P.plan_for(mode, 1), level)  # noqa: E731
    assert (at("rec2", 1), at("rec2", 2), at("rec2", 3)) == (40.0, 20.0, 0.0)
    assert at("rec2", Fraction(3, 2)) == 30.0 and at("rec1", Fraction(5, 2)) == 15.0
    assert at("cgen", 1) == 0.0 and at("lossless", 1) == 0.0  # no entry; lossless never


@pytest.mark.parametrize("mode", ["rec1", "rec2", "crec"])
def test_the_encoder_predicts_the_smoothed_image(smoothed, plain, natural, mode):
    img = np.ascontiguousarray(natural[:40, :50])
    rep = api.encode_report(img, mode, 1, model=smoothed)
    out = api.decode(rep["data"], model=smoothed, as_array=True)
    assert np.array_equal(out, rep["recon"])
    other = api.encode_report(img, mode, 1, model=plain)
    assert C.unpack(rep["data"])[1] == C.unpack(other["data"])[1]  # the same streams: only x̂ differs
    if mode != "crec":  # (a tiny random model's crec tile may carry y's upscale, which is not smoothed)
        assert not np.array_equal(rep["recon"], other["recon"])


@pytest.mark.parametrize("mode", ["rec2", "crec"])
def test_smoothing_is_the_same_across_tiles_and_threads(smoothed, natural, mode):
    img = np.ascontiguousarray(np.tile(natural, (2, 2, 1))[:80, :96])
    whole = api.encode_report(img, mode, 1, model=smoothed)["recon"]
    tiled = api.encode_report(img, mode, 1, model=smoothed, tile=32)
    assert np.array_equal(tiled["recon"], whole)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = api.decode(tiled["data"], model=smoothed, as_array=True)
    finally:
        torch.set_num_threads(before)
    assert np.array_equal(one, whole)


def test_a_bad_table_is_refused_from_the_config():
    for bad in ({"rec2": [300.0]}, {"rec2": "x"}, {"rec2": [1.0] * 300}, [1, 2]):
        with pytest.raises(CodecError, match="smooth"):
            modelfile.check_config({"smooth": bad})
