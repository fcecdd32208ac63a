"""The fast family's refine filters (fast.refine_filter, and after it fast.half_res_filter):
residual filters on x̂ at full and at half resolution. It changes what the modes that send ẑ (rec2, crec: what it learnt on) decode to,
never what is coded, and it is part of the reconstruction across tiles (its reach is far inside
the windows' margin)."""

import numpy as np
import pytest

from selfcodec import api
from selfcodec.codec import seamless as SL
from tests.conftest import build_tiny, without_part
from tests.test_seamless import _coded

LAMBDAS = (0.005, 0.01, 0.02)


@pytest.fixture(scope="module", params=[{}, {"refine_half": 2, "refine_half_ch": 4}], ids=["full", "full+half"])
def refined(request, model_dir) -> str:
    name = "tiny-fast-refine" + "-half" * bool(request.param)
    return str(build_tiny(model_dir / f"{name}.safetensors", "selfvae-downscale", seed=12, network="fast",
                          rd_lambdas=LAMBDAS, u_hyper=4, up_base="bicubic", refine=2, refine_ch=4, **request.param))


@pytest.fixture(scope="module")
def unrefined(refined, model_dir) -> str:
    return without_part(refined, model_dir / (refined.rsplit("/", 1)[-1][:-12] + "-off.safetensors"), "refine",
                        refine=0, refine_half=0)


@pytest.mark.parametrize("mode", ["rec1", "rec2", "cgen", "crec"])
def test_the_filter_shapes_the_picture_not_the_file(refined, unrefined, natural, mode):
    a = api.encode_report(natural, mode=mode, level=2, model=refined)
    b = api.encode_report(natural, mode=mode, level=2, model=unrefined)
    assert a["streams"] == b["streams"]
    assert np.array_equal(api.decode(a["data"], model=refined, as_array=True), a["recon"])
    if mode in ("rec1", "cgen"):
        assert np.array_equal(a["recon"], b["recon"])
    if mode == "rec2":  # (crec: this tiny model's tile carries the upscale of y, which is not filtered)
        assert not np.array_equal(a["recon"], b["recon"])


def test_the_filter_runs_across_tiles_exactly(refined, natural):
    img = np.ascontiguousarray(np.tile(natural, (6, 6, 1))[:320, :352])
    net, plan, coded, data = _coded(refined, img, "rec2", tile=64)
    exact_net, _ = SL.coding_net(net, True)
    assert len(SL.windows(*coded.size, 32, SL.MARGIN, net.multiple, SL.shaped_windows(net))) > 1
    whole = SL.reconstruct(exact_net, coded, plan, valid=img.shape[:2], window=1024)
    small = SL.reconstruct(exact_net, coded, plan, valid=img.shape[:2], window=32)
    assert np.array_equal(whole[:320, :352], api.decode(data, model=refined, as_array=True))
    assert np.array_equal(whole, small)
