"""The encoder's rate-distortion optimized quantization: symbols move at most one bin, only
toward the prior's mean, and only where the bits saved outweigh the error added."""

import numpy as np

from selfcodec.entropy import rdoq
from selfcodec.entropy.gaussian import GaussianConditional, scale_index


def _case(n=20000, seed=0):
    rng = np.random.default_rng(seed)
    sigma = rng.uniform(0.2, 4.0, n)
    return rng.normal(0, sigma), scale_index(sigma)


def test_weight_zero_is_plain_rounding():
    r, idx = _case()
    assert np.array_equal(rdoq.symbols(r, idx, 0.0), np.rint(r))


def test_symbols_move_one_bin_toward_the_mean_and_cost_fewer_bits():
    r, idx = _case()
    near, chosen = np.rint(r).astype(np.int64), rdoq.symbols(r, idx, 0.05)
    moved = chosen != near
    assert 0.005 < moved.mean() < 0.5  # some move, most do not
    assert np.all(np.abs(chosen - near) <= 1) and np.all(np.abs(chosen[moved]) < np.abs(near[moved]))
    assert np.all(np.abs(r - chosen) < 1.0)  # never more than a bin's error
    bits_near, bits_chosen = GaussianConditional.bits(near, idx), GaussianConditional.bits(chosen, idx)
    assert bits_chosen < bits_near
    err_near, err_chosen = np.sum((r - near) ** 2), np.sum((r - chosen) ** 2)
    assert err_chosen + 0.05 * bits_chosen < err_near + 0.05 * bits_near


def test_a_larger_weight_trades_more_error_for_fewer_bits():
    r, idx = _case()
    light, heavy = rdoq.symbols(r, idx, 0.02), rdoq.symbols(r, idx, 0.2)
    assert GaussianConditional.bits(heavy, idx) < GaussianConditional.bits(light, idx)
    assert np.mean((r - heavy) ** 2) > np.mean((r - light) ** 2)


def test_the_highest_levels_weigh_bits_less():
    assert rdoq.weight_at(1) == rdoq.WEIGHT and rdoq.weight_at(7) < rdoq.weight_at(5) < rdoq.WEIGHT
