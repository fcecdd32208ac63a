"""A file never makes work out of proportion to its bytes: each tile's streams must hold at least
what an honest encoder writes for them, checked from the stream table before any network runs."""

from unittest import mock

import numpy as np
import pytest

from selfcodec import api
from selfcodec.codec import container as C
from selfcodec.codec import modes as M
from selfcodec.entropy.coder import Coder, min_stream_bytes
from selfcodec.entropy.dmol import DMoL
from selfcodec.errors import FormatError


def test_the_floor_is_below_what_the_likeliest_pixels_cost():
    """Pixels under the sharpest mixture the coder allows cost more than DMoL.min_bits says."""
    n, c = 50_000, 3
    x = (2 * 128 - 255) / 255
    arrays = (np.zeros((n, 1)), np.full((n, c, 1), x), np.full((n, c, 1), -9.0), np.zeros((n, 3, 1)))
    for step in (1, 4, 16):
        coder = Coder()
        DMoL.encode(coder, np.full((n, c), 128, np.uint8), arrays, step)
        assert len(coder.to_bytes()) >= min_stream_bytes(DMoL.min_bits(n * c, step))


@pytest.mark.parametrize("value", [0, 128, 255])
@pytest.mark.parametrize("model", ["selfvae-downscale", "selfvae-downscale-elbo"])
def test_flat_images_still_decode(model, value):
    """The most compressible images an honest encoder meets pass the check, lossless included."""
    img = np.full((48, 64, 3), value, np.uint8)
    for mode in ("lossless", "cgen", "rec2"):
        data = api.encode(img, mode, 3, model=model)
        out = api.decode(data, as_array=True)
        if mode == "lossless":
            assert np.array_equal(out, img)


def _refused_before_any_network(data, tiny):
    with mock.patch.object(M, "decode_tile", side_effect=AssertionError("a tile was decoded")), \
            mock.patch.object(M, "decode_tile_layered", side_effect=AssertionError("a tile was decoded")):
        with pytest.raises(FormatError, match="no encoder writes fewer"):
            api.decode(data, model=tiny, max_pixels=None)


def test_a_small_lossless_file_declaring_a_large_tile_is_refused_before_decoding(tiny_model, natural):
    """The issue's 81-byte file: 2048x2048 in one tile, its image layers next to empty."""
    small = api.encode(np.ascontiguousarray(natural[:32, :32]), "lossless", 3, model=tiny_model)
    h, layers, alpha = C.unpack_layers(small)
    h.height = h.width = 2048
    h.tile_h = h.tile_w = 0
    forged = C.pack_layers(h, layers[:2] + [[b"\x01\x00\x00\x00"]] * (len(layers) - 2), alpha)
    assert len(forged) < 400
    _refused_before_any_network(forged, tiny_model)


def test_out_of_memory_is_not_a_corrupt_file(tiny_model, natural, monkeypatch):
    """An allocation that fails while a tile decodes is reported as memory, never as a damaged file."""
    from selfcodec.codec import files, modes

    data = api.encode(natural, "rec2", model=tiny_model)
    for exc in (MemoryError(), RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")):
        def fail(*a, exc=exc, **k):
            raise exc
        monkeypatch.setattr(modes, "decode_tile", fail)
        with pytest.raises(MemoryError):
            files.decode_rgb(data, model=tiny_model)
