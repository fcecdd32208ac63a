"""The codec's output is pinned: moving code must not change a byte of any file or a pixel of
any decode (tests/golden.py computes the hashes; golden_sample.json holds them)."""

import json

import pytest

from selfcodec import zoo
from tests.golden import GOLDEN, LEVELS, MODES, hashes, sample

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
    assert hashes(sample(64), model, mode, int(level)) == GOLDEN_TABLES["crop64"][case]


@pytest.mark.slow
@pytest.mark.parametrize("case", _cases("full"))
def test_golden_full_sample(case):
    model, mode, level = case.split("/")
    assert hashes(sample(), model, mode, int(level)) == GOLDEN_TABLES["full"][case]
