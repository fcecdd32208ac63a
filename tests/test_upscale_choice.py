"""cgen and crec are never worse than the bicubic upscale of the y they send: the encoder,
which has x, sends whichever of the model's x̂ and that upscale is closer, and one symbol at
the start of the tile's latents stream tells the decoder (format version 3); a layered file
holds one per image below x at the end of its first layer, for the prefixes that end there."""

import cv2
import numpy as np
import pytest
import torch

from selfcodec import api, zoo
from selfcodec.errors import FormatError
from selfcodec.metrics import mse
from selfcodec.codec import container as C
from selfcodec.codec import modes as M
from selfcodec.entropy.dmol import DMoL
from selfcodec.nn.transforms import downscale


def _sent_y(img: np.ndarray, level: int = 5, times: int = 1) -> np.ndarray:
    """What a cgen/crec decoder holds: y = d(x) (d applied `times` times), binned as the level codes it."""
    y = img
    for _ in range(times):
        y = downscale(torch.from_numpy(y.copy()).permute(2, 0, 1)[None].float())[0].permute(1, 2, 0).numpy()
        y = y.astype(np.uint8)
    step = M.LEVELS[level][1]
    return DMoL.bin_values(y, step).astype(np.uint8) if step > 1 else y


def _opencv_bicubic(y: np.ndarray, like: np.ndarray) -> np.ndarray:
    return cv2.resize(y, (like.shape[1], like.shape[0]), interpolation=cv2.INTER_CUBIC)


def _torch_bicubic(y: np.ndarray, like: np.ndarray) -> np.ndarray:
    """The same upscale in float, as the codec computes it (OpenCV's fixed point differs by rounding)."""
    t = torch.from_numpy(y.copy()).permute(2, 0, 1)[None].float()
    up = torch.nn.functional.interpolate(t, size=like.shape[:2], mode="bicubic", align_corners=False)
    return up[0].permute(1, 2, 0).clamp(0, 255).round().to(torch.uint8).numpy()


@pytest.mark.parametrize("which", ["densenet", "fast"])
@pytest.mark.parametrize("mode", ["cgen", "crec"])
def test_never_worse_than_the_bicubic_upscale_of_the_y_sent(tiny_model, tiny_fast_hyper, natural, which, mode):
    model = tiny_model if which == "densenet" else tiny_fast_hyper
    for level in (1, 3):
        rep = api.encode_report(natural, mode, level, model=model)
        assert rep["data"][4] == C.UPSCALE_FORMAT_VERSION
        out = api.decode(rep["data"], model=model, as_array=True)
        assert np.array_equal(out, rep["recon"])
        y = _sent_y(natural, level)
        assert mse(out, natural) <= mse(_torch_bicubic(y, natural), natural)
        # a random model's x̂ is far from x: the tile carries the upscale, OpenCV's to within rounding
        assert np.abs(out.astype(int) - _opencv_bicubic(y, natural)).max() <= 1


@pytest.mark.parametrize("choice", [False, True])
def test_either_choice_decodes_to_what_the_encoder_predicted(tiny_fast_hyper, natural, choice):
    net = zoo.load(tiny_fast_hyper)[0]
    plan = M.plan_for("crec", net.cfg.scales)
    x = M._tile_tensor(natural)
    for exact in (False, True):
        enc, rec = M._encode_walk(net, x, plan, 2, "mean", None, exact, [choice])
        if choice:  # no ẑ: the same latents stream as cgen's
            cgen, _ = M._encode_walk(net, x, M.plan_for("cgen", net.cfg.scales), 2, "mean", None, exact, [True])
            assert enc.streams == cgen.streams
        out, crc = M.decode_tile(net, enc.streams, *natural.shape[:2], plan, 2, exact=exact, choice=True)
        assert np.array_equal(out, rec) and crc == enc.crc


@pytest.mark.parametrize("which", ["tiny_model", "tiny_model_3l"])
def test_a_layered_files_image_prefixes_are_never_worse_than_the_upscale(request, natural, which):
    model = request.getfixturevalue(which)
    lossless = api.encode(natural, "lossless", 1, model=model)
    assert lossless[4] == C.UPSCALE_FORMAT_VERSION
    assert np.array_equal(api.decode(lossless, model=model, as_array=True), natural)
    cuts = {"crec": 2} if which == "tiny_model" else {"crec": 2, "crec-y1": 4}  # upscale factor to x
    for mode, factor in cuts.items():
        out = api.decode(api.truncate(lossless, mode), model=model, as_array=True)
        y = _sent_y(natural, 5, factor // 2)  # the image a prefix ends at is sent exactly: d(x), (crec-y1) d(d(x))
        assert mse(out, natural) <= mse(_torch_bicubic(y, natural), natural), mode
        if factor == 2:  # a random model's x̂ is far from x: the prefix is the upscale (to within rounding)
            assert np.abs(out.astype(int) - _opencv_bicubic(y, natural)).max() <= 1
    for mode in ("rec1", "rec2"):  # the other prefixes read past the choices
        api.decode(api.truncate(lossless, mode), model=model)


def test_files_without_the_choice_still_decode(tiny_model, natural, monkeypatch):
    with monkeypatch.context() as m:  # as files of format version 1 were written
        m.setattr(M, "has_upscale_choice", lambda model, plan: False)
        rep = api.encode_report(natural, "cgen", 2, model=tiny_model)
    assert rep["data"][4] == C.FORMAT_VERSION
    assert np.array_equal(api.decode(rep["data"], model=tiny_model, as_array=True), rep["recon"])
    with monkeypatch.context() as m:  # a layered file of format version 2
        m.setattr(M, "has_layered_choices", lambda model: False)
        lossless = api.encode(natural, "lossless", 2, model=tiny_model)
    assert lossless[4] == C.LAYERED_FORMAT_VERSION
    cut = api.truncate(lossless, "crec")
    assert np.array_equal(api.decode(lossless, model=tiny_model, as_array=True), natural)
    assert api.decode(cut, model=tiny_model, as_array=True).shape == natural.shape


def test_no_choice_where_there_is_no_upscale_to_send(tiny_model, tiny_sketch, natural):
    assert api.encode(natural, "rec2", model=tiny_model)[4] == C.FORMAT_VERSION
    assert api.encode(natural, "cgen", model=tiny_sketch)[4] == C.FORMAT_VERSION  # a sketch is no low-res x


def test_a_choice_in_a_mode_without_one_is_a_clear_error(tiny_model, natural):
    header, tiles, alpha = C.unpack(api.encode(natural, "rec2", model=tiny_model))
    header.upscale_choice = True
    with pytest.raises(FormatError, match="upscale choice in a rec2 file"):
        api.decode(C.pack(header, tiles, alpha), model=tiny_model)


def test_the_upscale_of_a_padded_tile_is_the_images_own(tiny_model, natural):
    img = np.ascontiguousarray(natural[:42, :58])  # padded to the model's multiple: the padding stays out of it
    rep = api.encode_report(img, "cgen", 5, model=tiny_model)
    out = api.decode(rep["data"], model=tiny_model, as_array=True)
    assert np.array_equal(out, rep["recon"])
    assert np.abs(out.astype(int) - _opencv_bicubic(_sent_y(img, 5), img)).max() <= 1
