"""Aiming at a size or a quality: fractional levels (steps interpolated in log2 between two
trained levels, on integer arithmetic, said by the header's level_frac byte of format version 5),
quality 0..100, target_size / target_psnr searches, the Pillow plugin's quality=, and the command
line's options checked before torch loads. Tiny random-init models; nothing reads ../shared."""

from __future__ import annotations

import math
import subprocess
import sys
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from selfcodec import api
from selfcodec.cli.main import main as cli
from selfcodec.codec import container as C
from selfcodec.codec import modes as M
from selfcodec.codec import plans as P
from selfcodec.codec import targets as T
from selfcodec.errors import CodecError, FormatError, TargetMissedWarning
from selfcodec.model import exact as X
from selfcodec.model.base import LOG2_GRID, grid_steps, interpolate_log2

ROOT = Path(__file__).resolve().parents[1]


# ---- levels and quality, torch-free ------------------------------------------------------------

def test_as_level_keeps_whole_levels_ints_and_snaps_fractions():
    assert P.as_level(3) == 3 and type(P.as_level(3)) is int
    assert type(P.as_level(3.0)) is int and type(P.as_level(Fraction(6, 2))) is int
    assert P.as_level(3.5) == Fraction(7, 2)
    assert P.as_level(2.001) == 2 and P.as_level(2.003) == Fraction(2 * 256 + 1, 256)  # the 1/256 grid
    assert P.level_parts(P.as_level(3.5)) == (3, 128) and P.level_parts(4) == (4, 0)
    for bad in (0, 0.99, 7.01, 80, -1, float("nan"), True, "3"):
        with pytest.raises(CodecError):
            P.as_level(bad)


def test_quality_maps_monotonically_onto_the_levels():
    for n in (1, 3, 7):
        levels = [P.level_for_quality(q, n) for q in range(101)]
        assert levels[0] == 1 and levels[-1] == n
        assert all(a <= b for a, b in zip(levels, levels[1:]))
    assert P.level_for_quality(50, 7) == 4 and P.level_for_quality(75, 7) == Fraction(11, 2)
    assert P.quality_for_level(Fraction(11, 2), 7) == 75
    for bad in (-1, 100.5, float("nan"), None, True):
        with pytest.raises(CodecError, match="quality"):
            P.check_quality(bad)


@pytest.mark.parametrize("kw", [dict(target_size=0), dict(target_size=-5), dict(target_size=1.5),
                                dict(target_psnr=0), dict(target_psnr=-3), dict(target_psnr=float("nan")),
                                dict(target_size=100, target_psnr=30)])
def test_bad_targets_are_refused(kw):
    with pytest.raises(CodecError):
        P.check_target(**kw)


# ---- steps between two levels ------------------------------------------------------------------

def test_interpolated_log2_steps_are_integer_mixes_of_the_rows():
    assert LOG2_GRID == X.ACT_ONE  # step_from_log2 reads them on its own grid, unrounded
    lo, hi = np.array([0.5, -1.25, 2.0]), np.array([-0.5, -1.0, 2.0])
    assert np.array_equal(interpolate_log2(lo, hi, 0), lo)
    assert np.array_equal(interpolate_log2(lo, hi, 128), [0.0, -1.125, 2.0])
    v = interpolate_log2(lo, hi, 77)
    assert np.array_equal(v * LOG2_GRID, np.rint(v * LOG2_GRID))  # on the grid
    assert np.all((v <= np.maximum(lo, hi)) & (v >= np.minimum(lo, hi)))


def test_grid_steps_between_two_levels():
    table = torch.tensor([[1.0, -2.0], [0.0, -1.3], [-1.0, -1.3]])
    for to_step in (None, X.step_from_log2):
        whole = [grid_steps(table, k, to_step) for k in (1, 2, 3)]
        assert np.array_equal(whole[0], [2.0, 0.25])  # whole levels: as before
        prev = whole[0]
        for num in (1, 64, 128, 200, 255):
            s = grid_steps(table, Fraction(256 + num, 256), to_step)
            assert np.all(np.minimum(whole[0], whole[1]) <= s) and np.all(s <= np.maximum(whole[0], whole[1]))
            assert np.all(np.sign(s - prev) * np.sign(whole[1] - whole[0]) >= 0)  # moving from one row to the other
            prev = s
        assert grid_steps(table, Fraction(5, 2), to_step)[1] == whole[2][1]  # equal rows: equal steps


def test_elbo_latent_steps_between_levels():
    assert M.latent_step(3) == 1.0 and M.latent_step(6) == 0.35
    mids = [M.latent_step(Fraction(3 * 256 + n, 256)) for n in (1, 128, 255)]
    assert 1.0 >= mids[0] >= mids[1] >= mids[2] >= 0.75
    assert mids[1] == round(math.sqrt(0.75) * 256) / 256  # halfway in log2, on the 1/256 grid
    assert M.y_bin(Fraction(7, 2)) == M.LEVELS[3][1]
    with pytest.raises(CodecError):
        M.latent_step(Fraction(7 * 256 + 1, 256))


# ---- the container -----------------------------------------------------------------------------

def _header(**kw):
    base = dict(model_name="m", model_hash=bytes(8), mode=2, level=3, height=16, width=16, colour=C.COLOUR_RGB,
                pad_h=0, pad_w=0, tile_h=0, tile_w=0, n_streams=1, pixel_crc=7)
    return C.Header(**{**base, **kw})


@pytest.mark.parametrize("extra", [{}, dict(metadata={"icc_profile": b"p"}), dict(upscale_choice=True)])
def test_level_fraction_round_trips_as_format_version_5(extra):
    h = _header(level_frac=77, **extra)
    data = C.pack(h, [[b"abc"]], alpha=b"a")
    assert data[4] == C.FRACTION_FORMAT_VERSION and data[6] & 0x40
    h2, tiles, alpha = C.unpack(data)
    assert h2.level_frac == 77 and h2.level_value == Fraction(3 * 256 + 77, 256) and tiles == [[b"abc"]]
    assert h2.metadata == h.metadata and h2.upscale_choice == h.upscale_choice and alpha == b"a"
    whole = C.pack(_header(**extra), [[b"abc"]], alpha=b"a")
    assert C.peek_header(whole).level_value == 3 and whole[4] < C.FRACTION_FORMAT_VERSION
    assert len(data) == len(whole) + 1  # one byte


def test_level_fraction_flag_byte_and_version_must_agree():
    def raw(**kw):
        base = dict(format_version=C.FRACTION_FORMAT_VERSION, coder_version=C.CODER_VERSION, flags=C.COLOUR_RGB | 0x40,
                    name=b"m", model_hash=bytes(8), mode=2, level=3, height=16, width=16, pad_h=0, pad_w=0,
                    tile_h=0, tile_w=0, n_streams=1, pixel_crc=0, alpha_len=None, lengths=[3], payload=b"abc",
                    level_frac=5)
        return C._pack_raw(**{**base, **kw})

    assert C.unpack(raw())[0].level_frac == 5
    for kw, match in [(dict(flags=C.COLOUR_RGB, level_frac=None), "without the fractional-level flag"),
                      (dict(level_frac=0), "fraction is 0"),
                      (dict(flags=C.COLOUR_RGB | 0xC0), "reserved flag bits"),
                      (dict(format_version=C.METADATA_FORMAT_VERSION, flags=C.COLOUR_RGB | 0x60), "reserved flag bits")]:
        with pytest.raises(FormatError, match=match):
            C.unpack(raw(**kw))
    with pytest.raises(ValueError):
        C.pack(_header(level_frac=256), [[b"abc"]])


# ---- coding at fractional levels ---------------------------------------------------------------

def _psnr(a, b):
    return T.psnr(a, b)


def test_fractional_levels_of_a_rate_distortion_model_round_trip(tiny_fast_hyper, natural):
    sizes = []
    for level in (1, 1.25, 1.5, 2, 2.5, 3):
        rep = api.encode_report(natural, "rec2", level, model=tiny_fast_hyper)
        assert np.array_equal(api.decode(rep["data"], model=tiny_fast_hyper, as_array=True), rep["recon"])
        info = api.info(rep["data"])
        assert info["level"] == level and info["format_version"] == (1 if level == int(level) else 5)
        sizes.append(len(rep["data"]))
    assert sizes == sorted(sizes)  # finer steps, more bytes
    with pytest.raises(CodecError, match="choose 1 to 3"):
        api.encode(natural, "rec2", 3.5, model=tiny_fast_hyper)


@pytest.mark.parametrize("mode", ["rec2", "cgen", "crec"])
def test_fractional_levels_of_an_elbo_model_round_trip(tiny_model, natural, mode):
    rep = api.encode_report(natural, mode, 4.5, model=tiny_model)
    assert np.array_equal(api.decode(rep["data"], model=tiny_model, as_array=True), rep["recon"])
    assert api.info(rep["data"])["level"] == 4.5


def test_a_layered_file_at_a_fractional_level_cuts_to_that_rec2(tiny_model, natural):
    data = api.encode(natural, "lossless", 2.5, model=tiny_model)
    assert np.array_equal(api.decode(data, model=tiny_model, as_array=True), natural)
    cut = api.truncate(data, "rec2")
    rep = api.encode_report(natural, "rec2", 2.5, model=tiny_model)
    assert api.info(cut)["level"] == 2.5
    assert np.array_equal(api.decode(cut, model=tiny_model, as_array=True), rep["recon"])


def test_a_fraction_past_the_models_last_level_is_a_corrupt_file(tiny_fast_hyper, natural):
    header, tiles, alpha = C.unpack(api.encode(natural, "rec2", 2.5, model=tiny_fast_hyper))
    header.level = 3  # 3 + 128/256 on a model of 3 levels
    with pytest.raises(FormatError, match="does not exist"):
        api.decode(C.pack(header, tiles, alpha), model=tiny_fast_hyper)


# ---- quality and targets through the API -------------------------------------------------------

def test_quality_is_a_level(tiny_fast_hyper, natural):
    def enc(**kw):
        return api.encode(natural, "rec2", model=tiny_fast_hyper, **kw)

    assert enc(quality=0) == enc(level=1) and enc(quality=100) == enc(level=3) and enc(quality=50) == enc(level=2)
    assert enc(quality=25) == enc(level=1.5)
    assert api.encode(natural, "rec2", model=tiny_fast_hyper) == enc(level=3)  # no option: the default level
    with pytest.raises(CodecError, match="not level and quality"):
        enc(level=2, quality=50)
    with pytest.raises(CodecError, match="quality"):
        enc(quality=101)


def test_target_size_gives_the_largest_file_under_it(tiny_fast_hyper, natural):
    sizes = {lv: len(api.encode(natural, "rec2", lv, model=tiny_fast_hyper)) for lv in (1, 3)}
    target = (sizes[1] + sizes[3]) // 2
    rep = api.encode_report(natural, "rec2", model=tiny_fast_hyper, target_size=target)
    aim = rep["aim"]
    assert aim.met and len(rep["data"]) <= target and len(aim.probes) <= T.MAX_PROBES
    assert len(rep["data"]) == max(p.size for p in aim.probes if p.size <= target)
    assert rep["data"] == api.encode(natural, "rec2", rep["level"], model=tiny_fast_hyper)
    assert 1 < rep["level"] < 3


def test_unreachable_targets_give_the_closest_file_and_a_warning(tiny_fast_hyper, natural):
    smallest = api.encode(natural, "rec2", 1, model=tiny_fast_hyper)
    with pytest.warns(TargetMissedWarning, match=f"smallest, at level 1, has {len(smallest)} bytes"):
        data = api.encode(natural, "rec2", model=tiny_fast_hyper, target_size=10)
    assert data == smallest
    with pytest.warns(TargetMissedWarning, match="no file reaches 99 dB"):
        rep = api.encode_report(natural, "rec2", model=tiny_fast_hyper, target_psnr=99)
    assert _psnr(rep["recon"], natural) == max(p.psnr for p in rep["aim"].probes)


def test_target_psnr_gives_a_file_at_least_that_good(tiny_fast_hyper, natural):
    low = _psnr(api.encode_report(natural, "rec2", 1, model=tiny_fast_hyper)["recon"], natural)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TargetMissedWarning)
        rep = api.encode_report(natural, "rec2", model=tiny_fast_hyper, target_psnr=low - 0.01)
    assert rep["aim"].met and _psnr(rep["recon"], natural) >= low - 0.01


def test_targets_are_refused_for_lossless(tiny_model, natural):
    with pytest.raises(CodecError, match="lossless"):
        api.encode(natural, "lossless", model=tiny_model, target_size=1000)


# ---- the search itself, on a model of sizes ----------------------------------------------------

def _fake(size_at, psnr_at=lambda lv: 20 + 2 * lv):
    calls = []

    def encode_at(level):
        calls.append(level)
        lv = float(level)
        recon = np.full((1, 1, 3), 100, np.uint8)
        return {"data": bytes(int(size_at(lv))), "recon": recon, "psnr": psnr_at(lv)}

    return encode_at, calls


@pytest.mark.parametrize("target", [1300, 2000, 5555, 6000])
def test_size_search_hits_within_one_percent_on_a_smooth_curve(target):
    encode_at, calls = _fake(lambda lv: 1000 * 1.35 ** (lv - 1))  # levels 35 % apart
    found = T.aim(encode_at, np.zeros((1, 1, 3), np.uint8), 7, target_size=target)
    assert found.met and len(calls) <= T.MAX_PROBES and len(set(calls)) == len(calls)
    assert target * 0.99 <= found.best.size <= target


def test_size_search_survives_a_noisy_curve():
    rng = np.random.default_rng(0)
    noise = {}
    encode_at, calls = _fake(lambda lv: 1000 * 1.35 ** (lv - 1) * noise.setdefault(lv, rng.uniform(0.97, 1.03)))
    found = T.aim(encode_at, np.zeros((1, 1, 3), np.uint8), 7, target_size=3000)
    assert found.met and found.best.size <= 3000 and len(calls) <= T.MAX_PROBES


# ---- Pillow and the command line ---------------------------------------------------------------

def test_pillow_save_quality(pillow_plugin, tiny_fast_hyper, natural, tmp_path, monkeypatch):
    im = Image.fromarray(natural)
    for q in (10, 95):
        im.save(tmp_path / f"q{q}.svae", quality=q, model=tiny_fast_hyper)
    small, big = ((tmp_path / f"q{q}.svae").read_bytes() for q in (10, 95))
    assert len(small) < len(big)
    assert small == api.encode(natural, "rec2", model=tiny_fast_hyper, quality=10)


def _run(*args):
    try:
        runner = CliRunner(mix_stderr=False)
    except TypeError:  # click >= 8.2 keeps stderr apart by itself
        runner = CliRunner()
    return runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_cli_quality_fractional_level_and_targets(tiny_fast_hyper, natural, tmp_path):
    src = tmp_path / "a.png"
    Image.fromarray(natural).save(src)
    res = _run("encode", src, "-q", "25", "--model", tiny_fast_hyper, "-o", tmp_path / "q.svae")
    assert res.exit_code == 0 and "level 1.5)" in res.stderr
    assert (tmp_path / "q.svae").read_bytes() == api.encode(natural, "rec2", 1.5, model=tiny_fast_hyper)
    assert _run("encode", src, "-l", "2.5", "--model", tiny_fast_hyper, "-o", tmp_path / "l.svae").exit_code == 0
    assert api.info((tmp_path / "l.svae").read_bytes())["level"] == 2.5
    res = _run("encode", src, "--target-size", "10", "--model", tiny_fast_hyper, "-o", tmp_path / "t.svae")
    assert res.exit_code == 0 and "warning" in res.stderr and "no file reaches 10 bytes" in res.stderr
    limit = len(api.encode(natural, "rec2", 2, model=tiny_fast_hyper))
    res = _run("encode", src, "--target-size", limit, "--model", tiny_fast_hyper, "-o", tmp_path / "s.svae")
    assert res.exit_code == 0 and "warning" not in res.stderr and len((tmp_path / "s.svae").read_bytes()) <= limit


def test_cli_refuses_bad_quality_options_before_torch_loads(tmp_path):
    src = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(src)
    bad = [["-l", "80"], ["-l", "0"], ["--quality", "101"], ["-q", "-1"], ["-q", "100.5"], ["--target-size", "-5"],
           ["--target-size", "0"], ["--target-psnr", "-1"], ["-l", "3", "--quality", "50"], ["-l", "3", "-q", "50"],
           ["--quality", "50", "--target-size", "1000"], ["-m", "lossless", "--target-size", "1000"]]
    code = ("import sys; from click.testing import CliRunner; from selfcodec.cli.main import main; "
            f"res = [CliRunner().invoke(main, ['encode', {str(src)!r}, *opts]) for opts in {bad!r}]; "
            "print([r.exit_code for r in res]); print(res[0].output); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == str([2] * len(bad))
    assert "is -q 80" in out.stdout  # -l 80, a level no model has, is pointed to the quality, -q 80


def test_pillow_refuses_bad_quality_options_before_torch_loads(tmp_path):
    code = ("import sys; from PIL import Image; import selfcodec.pillow; from selfcodec.errors import CodecError\n"
            "for opts in ({'quality': 120}, {'quality': -1}, {'level': 80}, {'level': 3, 'quality': 50}):\n"
            "    try:\n"
            f"        Image.new('RGB', (8, 8)).save({str(tmp_path / 'x.svae')!r}, **opts)\n"
            "    except CodecError as e:\n"
            "        print(e)\n"
            "    else:\n"
            "        raise AssertionError(opts)\n"
            "assert 'torch' not in sys.modules, 'torch imported'")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.splitlines()) == 4 and "quality must be a number from 0 to 100" in out.stdout
    assert not (tmp_path / "x.svae").exists()


def test_quality_targets_benchmark_runs(tiny_fast_hyper, natural, tmp_path):
    import json

    from benchmarks import quality_targets

    (tmp_path / "data").mkdir()
    Image.fromarray(natural).save(tmp_path / "data" / "a.png")
    quality_targets.main(["--data", str(tmp_path / "data"), "--images", "1", "--model", tiny_fast_hyper,
                          "--fractions", "1.5,2.5", "--target-bpps", "0.5,4", "--out", str(tmp_path)])
    doc = json.loads((tmp_path / "quality_targets.json").read_text())
    assert [p["level"] for p in doc["whole_levels"]] == [1, 2, 3]
    assert [p["level"] for p in doc["fractional_levels"]] == [1.5, 2.5]
    assert len(doc["targets"]) == 2 and doc["summary"]["target_hits"] == 2
