"""Codec requirements: every mode and level round trips, the decoder reproduces the encoder's
predicted reconstruction bit for bit, the container describes itself, sizes are sane, and
every kind of input image comes back in its own form. Uses tiny random-init models."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from selfcodec import api
from selfcodec.codec import container as C
from selfcodec.codec import modes as M
from selfcodec.errors import CodecError, ModelMismatchError, UnsupportedImageError

MODES = ["rec1", "rec2", "cgen", "crec", "lossless"]


def _random(rng, h, w, c=3):
    return rng.integers(0, 256, (h, w, c) if c else (h, w), dtype=np.uint8)


def _roundtrip(img, mode, level, model, **kw):
    rep = api.encode_report(img, mode, level, model=model, **kw)
    out = api.decode(rep["data"], model=model, as_array=True)
    return rep, out


# --------------------------------------------------------------------------- every mode, every level


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_every_level_random(tiny_model, rng, mode):
    img = _random(rng, 16, 32)
    for level in api.LEVELS:
        rep, out = _roundtrip(img, mode, level, tiny_model)
        assert out.shape == img.shape and out.dtype == np.uint8
        assert np.array_equal(out, rep["recon"]), (mode, level)
        if mode == "lossless":
            assert np.array_equal(out, img)
        hdr = C.peek_header(rep["data"])
        assert (M.MODE_NAMES[hdr.mode], hdr.level) == (mode, level)


@pytest.fixture(scope="module")
def natural_reports(tiny_model, natural):
    return {m: api.encode_report(natural, m, api.DEFAULT_LEVEL, model=tiny_model) for m in MODES}


@pytest.mark.parametrize("mode", MODES)
def test_natural_roundtrip_and_info(tiny_model, natural, natural_reports, mode):
    rep = natural_reports[mode]
    data = rep["data"]
    img = api.decode(data, model=tiny_model)
    assert img.mode == "RGB" and img.size == (64, 48)
    out = np.asarray(img)
    assert np.array_equal(out, rep["recon"])
    if mode == "lossless":
        assert np.array_equal(out, natural)
    else:
        assert not np.array_equal(out, natural)  # a lossy mode of a random model does lose something

    inf = api.info(data)
    assert (inf["width"], inf["height"], inf["mode"], inf["level"]) == (64, 48, mode, api.DEFAULT_LEVEL)
    assert inf["bytes"] == len(data)
    assert inf["bpp"] == pytest.approx(8 * len(data) / (64 * 48))
    assert inf["tiles"] == 1 and inf["colour"] == "RGB"
    assert sum(inf["streams"].values()) + inf["header_bytes"] == len(data)
    assert inf["header_bytes"] == C.header_size(data)
    assert list(inf["streams"].values()) == [s["bytes"] for s in rep["streams"].values()]


@pytest.mark.parametrize("mode", MODES)
def test_estimated_bits_match_real_bytes(natural_reports, mode):
    for name, s in natural_reports[mode]["streams"].items():
        est = s["estimated_bits"] / 8
        assert abs(s["bytes"] - est) <= 0.01 * est + 16, (mode, name, s)


def test_sizes_order_on_natural_image(natural_reports):
    size = {m: len(r["data"]) for m, r in natural_reports.items()}
    assert size["rec1"] < size["rec2"]
    assert size["cgen"] <= size["crec"]  # equal where both carry the upscale of ŷ (crec then sends no ẑ)
    assert size["crec"] < size["lossless"]


def test_verify(tiny_model, natural):
    data = api.encode(natural, "crec", 2, model=tiny_model, verify=True)
    assert api.info(data)["mode"] == "crec"


# --------------------------------------------------------------------------- shapes and image kinds


@pytest.mark.parametrize("h,w", [(1, 1), (3, 5), (17, 33), (65, 31)])
def test_odd_sizes(tiny_model, rng, h, w):
    img = _random(rng, h, w)
    for mode in ("lossless", "rec2"):
        rep, out = _roundtrip(img, mode, 3, tiny_model)
        assert out.shape == (h, w, 3)
        assert np.array_equal(out, rep["recon"])
        if mode == "lossless":
            assert np.array_equal(out, img)
        inf = api.info(rep["data"])
        assert (inf["width"], inf["height"]) == (w, h)


@pytest.mark.parametrize("kind", ["downscale", "downscale-3l"])
def test_lossless_given_y_roundtrips_and_is_smaller(tiny_model, tiny_model_3l, tiny_models_y_consistent,
                                                     natural, rng, kind):
    """The same weights with y_consistent code each 2x2 block's last pixel given the block's
    rounded mean: exact at odd sizes too, every mode still decodes, and lossless is smaller."""
    yc, plain = tiny_models_y_consistent[kind], {"downscale": tiny_model, "downscale-3l": tiny_model_3l}[kind]
    for img in (natural, _random(rng, 17, 33)):
        rep, out = _roundtrip(img, "lossless", 3, yc)
        assert np.array_equal(out, img) and np.array_equal(out, rep["recon"])
    sizes = {m: len(api.encode(natural, "lossless", model=m)) for m in (yc, plain)}
    assert sizes[yc] < 0.95 * sizes[plain]
    for mode in ("rec2", "crec"):
        rep, out = _roundtrip(natural, mode, 5, yc)
        assert np.array_equal(out, rep["recon"])


@pytest.mark.parametrize("kind", ["downscale", "downscale-3l", "vae"])
def test_staged_models_roundtrip_every_mode(tiny_models_staged, natural, rng, kind):
    """x_context / y_context models decode an image stage by stage, each stage's tables from the
    pixels decoded before: exact at odd sizes, and every lossy mode decodes to the encoder's
    prediction."""
    model = tiny_models_staged[kind]
    for img in (natural, _random(rng, 17, 33)):
        rep, out = _roundtrip(img, "lossless", 3, model)
        assert np.array_equal(out, img) and np.array_equal(out, rep["recon"])
    for mode in ["rec1"] if kind == "vae" else ["rec1", "rec2", "cgen", "crec"]:
        rep, out = _roundtrip(natural, mode, 5, model)
        assert np.array_equal(out, rep["recon"])


def test_grayscale(tiny_model, natural):
    gray = np.asarray(Image.fromarray(natural[:16, :24]).convert("L"))
    img = api.decode(api.encode(Image.fromarray(gray), "lossless", model=tiny_model), model=tiny_model)
    assert img.mode == "L" and np.array_equal(np.asarray(img), gray)
    lossy = api.decode(api.encode(gray, "rec2", model=tiny_model), model=tiny_model)
    assert lossy.mode == "L" and lossy.size == (24, 16)


def test_rgba_keeps_alpha(tiny_model, rng, natural):
    rgba = np.dstack([natural[:20, :30], _random(rng, 20, 30, 0)])
    for mode in ("rec1", "lossless"):
        rep, _ = _roundtrip(rgba, mode, 3, tiny_model)
        img = api.decode(rep["data"], model=tiny_model)
        assert img.mode == "RGBA"
        a = np.asarray(img)
        assert np.array_equal(a[..., 3], rgba[..., 3])
        assert np.array_equal(a[..., :3], rep["recon"])
        if mode == "lossless":
            assert np.array_equal(a, rgba)
    assert "alpha" in api.info(rep["data"])["streams"]


def _png(arr, mode=None) -> bytes:
    bio = io.BytesIO()
    Image.fromarray(arr, mode).save(bio, format="PNG") if mode else Image.fromarray(arr).save(bio, format="PNG")
    return bio.getvalue()


def test_16bit_exact_and_inexact(tiny_model, natural):
    gray8 = np.asarray(Image.fromarray(natural[:16, :16]).convert("L"))
    exact = gray8.astype(np.uint16) * 257
    png = _png(exact)
    assert Image.open(io.BytesIO(png)).mode.startswith("I")
    img = api.decode(api.encode(png, "lossless", model=tiny_model), model=tiny_model)
    assert img.mode == "L" and np.array_equal(np.asarray(img), gray8)
    # a uint16 RGB array that is exactly 8-bit
    rgb16 = natural[:16, :16].astype(np.uint16) * 257
    out = api.decode(api.encode(rgb16, "lossless", model=tiny_model), model=tiny_model, as_array=True)
    assert np.array_equal(out, natural[:16, :16])

    inexact = exact.copy()
    inexact[3, 4] += 1
    with pytest.raises(UnsupportedImageError):
        api.encode(_png(inexact), "lossless", model=tiny_model)
    bad_rgb = rgb16.copy()
    bad_rgb[0, 0, 1] += 3
    with pytest.raises(UnsupportedImageError):
        api.encode(bad_rgb, "rec2", model=tiny_model)


def test_palette_image(tiny_model, natural):
    pal = Image.fromarray(natural[:24, :24]).quantize(16)
    assert pal.mode == "P"
    img = api.decode(api.encode(pal, "lossless", model=tiny_model), model=tiny_model)
    assert img.mode == "RGB"
    assert np.array_equal(np.asarray(img), np.asarray(pal.convert("RGB")))


def test_multi_tile(tiny_model, natural):
    img = np.ascontiguousarray(natural[:40, :50])
    for mode in ("lossless", "rec2", "cgen"):
        rep = api.encode_report(img, mode, 3, model=tiny_model, tile=32)
        inf = api.info(rep["data"])
        assert inf["tiles"] == 4 and (inf["width"], inf["height"]) == (50, 40)
        out = api.decode(rep["data"], model=tiny_model, as_array=True)
        assert out.shape == img.shape
        assert np.array_equal(out, rep["recon"])
        if mode == "lossless":
            assert np.array_equal(out, img)
        else:  # coded tile by tile, reconstructed across the tiles (tests/test_seamless.py)
            assert C.peek_header(rep["data"]).seamless
    assert np.array_equal(api.decode(api.encode(img, "lossless", model=tiny_model, tile=32), model=tiny_model,
                                     as_array=True), img)


# --------------------------------------------------------------------------- models


def test_other_model_is_refused(tiny_model, tiny_model_other, natural):
    data = api.encode(natural[:16, :16], "rec2", model=tiny_model)
    with pytest.raises(ModelMismatchError) as e:
        api.decode(data, model=tiny_model_other)
    assert "--model" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("which", ["downscale-3l", "vae", "sketch"])
def test_other_families_every_mode(all_tiny_models, rng, which):
    from selfcodec import zoo

    path = all_tiny_models[which]
    net = zoo.load(path)[0]
    modes = M.modes_for(net.cfg.scales)
    assert "rec1" in modes and "lossless" in modes
    img = _random(rng, 17, 30)
    for mode in modes:
        rep, out = _roundtrip(img, mode, 2, path)
        assert out.shape == img.shape
        assert np.array_equal(out, rep["recon"]), (which, mode)
        if mode == "lossless":
            assert np.array_equal(out, img)
    if net.cfg.scales == 0:
        for mode in ("rec2", "cgen", "crec"):
            with pytest.raises(CodecError, match="not available"):
                api.encode(img, mode, model=path)


def test_unavailable_modes_and_levels(tiny_vae, tiny_model, rng):
    img = _random(rng, 8, 8)
    with pytest.raises(CodecError):
        api.encode(img, "cgen", model=tiny_vae)
    with pytest.raises(CodecError):
        api.encode(img, "cgen-y1", model=tiny_model)
    with pytest.raises(CodecError):
        api.encode(img, "nope", model=tiny_model)
    for level in (0, 8):
        with pytest.raises(CodecError):
            api.encode(img, "rec2", level, model=tiny_model)


@pytest.mark.parametrize("mode", ["rec1", "rec2", "cgen", "crec"])
def test_the_file_is_the_same_without_the_reconstruction(tiny_fast_models, natural, mode):
    """api.encode skips x̂ where the file does not need it (rec1, rec2; cgen and crec choose
    between x̂ and the upscale): the same bytes, in one tile and across tiles."""
    path = tiny_fast_models["selfvae-downscale"]
    img = np.ascontiguousarray(natural[:40, :50])
    for tile in (1024, 32):
        rep = api.encode_report(img, mode, 2, model=path, tile=tile)
        quick = api.encode_report(img, mode, 2, model=path, tile=tile, reconstruct=False)
        assert quick["data"] == rep["data"] and api.encode(img, mode, 2, model=path, tile=tile) == rep["data"]
        assert (quick["recon"] is None) == (mode in ("rec1", "rec2"))
        assert C.peek_header(rep["data"]).seamless == (tile == 32)
        assert np.array_equal(api.decode(rep["data"], model=path, as_array=True), rep["recon"])
