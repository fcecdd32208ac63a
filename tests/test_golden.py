"""The codec's output is pinned: moving code must not change a byte of any file or a pixel of
any decode (tests/golden.py computes the hashes; golden_sample.json holds them)."""

import json

import pytest

from selfcodec import zoo
from tests.golden import GOLDEN, LEVELS, MODES, hashes, same, sample

GOLDEN_TABLES = json.loads(GOLDEN.read_text())
pytestmark = pytest.mark.usefixtures("stored_fallback")  # the files users get


def _cases(key):
    return sorted(GOLDEN_TABLES.get(key, {}))


def test_golden_covers_every_shipped_model_mode_and_level():
    want = {f"{m}/{mode}/{lv}" for m in zoo.available() for mode in MODES for lv in LEVELS}
    assert set(GOLDEN_TABLES["crop64"]) == want


@pytest.mark.parametrize("case", _cases("crop64"))
def test_golden_crop(case):
    model, mode, level = case.split("/")
    got = hashes(sample(64), model, mode, int(level))
    assert same(got, GOLDEN_TABLES["crop64"][case]), got


@pytest.mark.slow
@pytest.mark.parametrize("case", _cases("full"))
def test_golden_full_sample(case):
    model, mode, level = case.split("/")
    got = hashes(sample(), model, mode, int(level))
    assert same(got, GOLDEN_TABLES["full"][case]), got


def test_a_lossy_case_may_round_otherwise_but_not_code_otherwise():
    want = {"file": "f", "pixels": "p", "psnr": 30.0}
    assert same(dict(want), want)
    assert same({"file": "f", "pixels": "q", "psnr": 30.004}, want)  # another CPU's float rounding
    assert not same({"file": "f", "pixels": "q", "psnr": 30.02}, want)  # a decoder that changed
    assert not same({"file": "g", "pixels": "p", "psnr": 30.0}, want)  # an encoder that changed
    assert not same({"file": "f", "pixels": "q"}, {"file": "f", "pixels": "p"})  # lossless: exact
