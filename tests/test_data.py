"""Training data: 'SET@scale' downscales a set, and RandomCrops(by_area=True) picks images in
proportion to their pixels."""

import numpy as np
import pytest
from PIL import Image

from selfcodec.train import data


def test_a_set_at_a_scale_is_downscaled_by_area_averaging(tmp_path):
    a = np.zeros((40, 60, 3), np.uint8)
    a[:, ::2] = 200  # stripes one pixel wide: area averaging at 1/2 gives their mean
    Image.fromarray(a).save(tmp_path / "a.png")
    (out,) = data.resolve(f"{tmp_path}@0.5")
    assert out.shape == (20, 30, 3) and np.all(out == 100)
    with pytest.raises(ValueError, match="downscaled"):
        data.resolve(f"{tmp_path}@2")


def test_crops_by_area_come_from_the_large_image_as_often_as_its_pixels_say():
    small, large = np.zeros((16, 16, 3), np.uint8), np.full((16, 16 * 9, 3), 255, np.uint8)
    crops = data.RandomCrops([small, large], 16, seed=0, by_area=True).batch(2000)
    share = float((crops[:, 0, 0, 0] == 255).mean())
    assert 0.86 < share < 0.94  # 9 / 10 of the pixels
    uniform = data.RandomCrops([small, large], 16, seed=0).batch(2000)
    assert 0.45 < float((uniform[:, 0, 0, 0] == 255).mean()) < 0.55


def test_a_file_range_keeps_those_files_in_sorted_order(tmp_path):
    for i in range(5):  # images filled with their index, so each file is known by its pixels
        Image.fromarray(np.full((4, 4, 3), i, np.uint8)).save(tmp_path / f"{i:02d}.png")
    assert [int(a[0, 0, 0]) for a in data.resolve(f"{tmp_path}[2:]")] == [2, 3, 4]
    assert [int(a[0, 0, 0]) for a in data.resolve(f"{tmp_path}[1:3]")] == [1, 2]
    with pytest.raises(ValueError, match="start:stop"):
        data.resolve(f"{tmp_path}[x]")
