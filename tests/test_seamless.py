"""A tiled file is reconstructed across its tiles (codec/seamless.py): no seam at a tile border,
and the reconstruction's windows are invisible."""

import numpy as np
import pytest
from PIL import Image

from selfcodec import api, zoo
from selfcodec.codec import container as C
from selfcodec.codec import files, seamless as SL, tiled as TL
from selfcodec.codec import modes as M
from selfcodec.errors import ChecksumError, FormatError

from conftest import ASSET


def _border_ratios(img: np.ndarray, cols, rows) -> list:
    """Mean absolute step across each border (between pixel b-1 and b) over the mean step of
    the three columns (rows) on either side of it."""
    grey = img.astype(float).mean(2)
    out = []
    for axis, borders in ((1, cols), (0, rows)):
        g = np.abs(np.diff(grey, axis=axis)).mean(axis=1 - axis)
        out += [g[b - 1] / np.r_[g[b - 5:b - 2], g[b:b + 3]].mean() for b in borders]
    return out


def _photo_like(h: int, w: int) -> np.ndarray:
    """The bundled photo crop upscaled to h x w, with a little grain."""
    with Image.open(ASSET) as im:
        a = np.asarray(im.convert("RGB").resize((w, h), Image.BICUBIC)).astype(np.float32)
    return np.clip(a + np.random.default_rng(0).normal(0, 2, a.shape), 0, 255).astype(np.uint8)


def test_no_seam_at_tile_borders_of_a_large_photo():
    """2100 x 1300 at the default settings (tiles of 1024): the step across every tile border
    is in line with its neighbours', as in the original; tiles coded and reconstructed on their
    own (the files of format versions 1-5) step 3-4x their neighbours there."""
    img = _photo_like(1300, 2100)
    rep = api.encode_report(img, "rec2")
    assert C.peek_header(rep["data"]).seamless
    out = api.decode(rep["data"], as_array=True)
    assert np.array_equal(out, rep["recon"])
    cols, rows = (1024, 2048), (1024,)
    assert max(_border_ratios(out, cols, rows)) < 1.5, _border_ratios(out, cols, rows)
    alone = np.empty_like(img)  # each tile on its own: how the seam looked
    for top, left, h, w in C.tile_grid(1300, 2100, 1024, 1024):
        part = np.ascontiguousarray(img[top:top + h, left:left + w])
        alone[top:top + h, left:left + w] = api.encode_report(part, "rec2")["recon"]
    assert min(_border_ratios(alone, cols, rows)) > 2.0


@pytest.mark.parametrize("mode", ["rec1", "rec2", "cgen", "crec"])
def test_the_image_is_the_same_whatever_the_tile_size(mode):
    """The tiles' latents are coded under priors computed over the whole image (codec/tiled.py),
    so tiles of 128 or 192 pixels, or one tile, decode to the same pixels."""
    img = _photo_like(300, 400)
    one = api.encode_report(img, mode, tile=1024)
    assert not C.peek_header(one["data"]).seamless
    for tile in (128, 192):
        rep = api.encode_report(img, mode, tile=tile)
        assert C.peek_header(rep["data"]).n_tiles > 1
        assert np.array_equal(api.decode(rep["data"], as_array=True), one["recon"]), tile


def test_a_lossless_files_prefixes_are_the_same_whatever_the_tile_size():
    img = _photo_like(200, 260)
    tiled, whole = api.encode(img, "lossless", tile=128), api.encode(img, "lossless", tile=1024)
    assert np.array_equal(api.decode(tiled, as_array=True), img)
    for mode in ("rec1", "rec2"):
        assert np.array_equal(api.decode(api.truncate(tiled, mode), as_array=True),
                              api.decode(api.truncate(whole, mode), as_array=True))


def test_tile_sides_fall_on_the_hyperpriors_grid():
    """A tile of 80 pixels would split v's elements (64 pixels each) between tiles: the encoder
    takes 64, and a header that says 80 is refused."""
    img = _photo_like(150, 170)
    data = api.encode(img, "rec1", tile=80)
    header, tiles, alpha = C.unpack(data)
    assert header.tile_h == header.tile_w == 64
    header.tile_h = header.tile_w = 80
    header.tile_crcs = (0,) * header.n_tiles
    with pytest.raises(FormatError, match="multiples of 64"):
        files.decode_rgb(C.pack(header, tiles[:header.n_tiles], alpha))


def _coded(model_name: str, img: np.ndarray, mode: str, tile: int):
    net, _, _ = zoo.load(model_name)
    data = api.encode(img, mode, model=model_name, tile=tile)
    header, tiles, _ = C.unpack(data)
    plan = M.plan_for(mode, net.cfg.scales)
    grid = C.tile_grid(header.height, header.width, header.tile_h, header.tile_w)
    size = (-(-img.shape[0] // net.multiple) * net.multiple, -(-img.shape[1] // net.multiple) * net.multiple)
    exact_net, _ = SL.coding_net(net, True)
    coded, _ = TL.decode_coded(exact_net, tiles, grid, size, plan, header.level_value, True, header.upscale_choice)
    return net, plan, coded, data


@pytest.mark.parametrize("model_name,mode,tolerance", [
    ("selfvae-downscale", "rec2", 0), ("selfvae-downscale", "rec1", 0), ("selfvae-downscale", "cgen", 0),
    ("selfvae-downscale", "crec", 0), ("selfvae-downscale-elbo", "rec2", 3)])
def test_windows_do_not_show(natural, model_name, mode, tolerance):
    """The reconstruction in small windows (each with the margin of context) is the one in a
    single window: exactly for the fast family, within 3 levels for the DenseNet family's deeper
    nets; without the margin it is not."""
    img = np.ascontiguousarray(np.tile(natural, (6, 6, 1))[:320, :352])
    net, plan, coded, data = _coded(model_name, img, mode, tile=64)
    exact_net, _ = SL.coding_net(net, True)
    assert len(SL.windows(*coded.size, 32, SL.MARGIN, net.multiple)) > 1  # (a read box holds (32 + 2 x 128)^2 pixels)
    whole = SL.reconstruct(exact_net, coded, plan, valid=img.shape[:2], window=1024)
    small = SL.reconstruct(exact_net, coded, plan, valid=img.shape[:2], window=32)
    assert np.array_equal(whole[:320, :352], api.decode(data, as_array=True))
    assert np.abs(whole.astype(int) - small.astype(int)).max() <= tolerance
    blind = SL.reconstruct(exact_net, coded, plan, valid=img.shape[:2], window=32, margin=0)
    assert np.abs(whole.astype(int) - blind.astype(int)).max() > 3


def test_layered_prefixes_of_a_tiled_file_are_the_plain_files(tiny_model, natural):
    img = np.ascontiguousarray(np.tile(natural, (2, 2, 1))[:80, :112])
    data = api.encode(img, "lossless", model=tiny_model, tile=48)
    assert C.peek_header(data).seamless
    assert np.array_equal(api.decode(data, model=tiny_model, as_array=True), img)
    for mode in ("rec1", "rec2"):
        cut = api.truncate(data, mode)
        plain = api.encode_report(img, mode, 3, model=tiny_model, tile=48)
        assert np.array_equal(api.decode(cut, model=tiny_model, as_array=True), plain["recon"])


def test_seamless_flag_in_the_container():
    head = dict(model_name="m", model_hash=b"\0" * 8, mode=1, level=3, height=40, width=50, colour=C.COLOUR_RGB,
                pad_h=0, pad_w=0, n_streams=1, pixel_crc=0)
    data = C.pack(C.Header(**head, tile_h=32, tile_w=32, seamless=True, tile_crcs=(1, 2, 3, 4)), [[b"x"]] * 4)
    assert data[4] == C.SEAMLESS_FORMAT_VERSION
    assert C.peek_header(data).seamless and C.peek_header(data).tile_crcs == (1, 2, 3, 4)
    assert C.peek_header(C.pack(C.Header(**head, tile_h=32, tile_w=32), [[b"x"]] * 4)).format_version == 1
    with pytest.raises(ValueError, match="tile CRCs"):
        C.pack(C.Header(**head, tile_h=32, tile_w=32, seamless=True), [[b"x"]] * 4)
    one = C.pack(C.Header(**head, tile_h=0, tile_w=0, seamless=True, tile_crcs=(7,)), [[b"x"]])
    with pytest.raises(FormatError, match="one tile"):
        C.peek_header(one)


def test_a_seamless_lossless_plain_file_is_refused(tiny_model, natural):
    """The flag means nothing for x sent exactly: a plain lossless file carrying it is corrupt."""
    data = api.encode(natural, "lossless", model=tiny_model, tile=32, layered=False)
    header, tiles, alpha = C.unpack(data)
    assert not header.seamless
    header.seamless, header.format_version, header.tile_crcs = True, C.SEAMLESS_FORMAT_VERSION, (0,) * header.n_tiles
    with pytest.raises(FormatError, match="lossless"):
        files.decode_rgb(C.pack(header, tiles, alpha), model=tiny_model)


def test_a_damaged_tile_is_refused_before_the_image_is_reconstructed(tiny_model, natural, monkeypatch):
    """A seamless file carries each tile's CRC: a damaged tile (here one spliced from another)
    is named once the tiles' integers are decoded, before the networks reconstruct the image."""
    img = np.ascontiguousarray(np.tile(natural, (2, 2, 1))[:80, :112])
    header, tiles, alpha = C.unpack(api.encode(img, "rec2", model=tiny_model, tile=48))
    assert header.seamless and len(header.tile_crcs) == header.n_tiles > 1
    calls = []
    real = SL.reconstruct
    monkeypatch.setattr(SL, "reconstruct", lambda *a, **k: calls.append(1) or real(*a, **k))
    forged = C.pack(header, [[tiles[1][0]]] + tiles[1:], alpha)  # tile 0 carries tile 1's latents
    with pytest.raises((ChecksumError, FormatError)):
        files.decode_rgb(forged, model=tiny_model)
    header.tile_crcs = (header.tile_crcs[0] ^ 1,) + header.tile_crcs[1:]  # or a CRC that does not match
    with pytest.raises(ChecksumError, match=r"tile at \(0, 0\)"):
        files.decode_rgb(C.pack(header, tiles, alpha), model=tiny_model)
    assert not calls


def test_tile_crcs_survive_a_cut_of_a_layered_file(tiny_model, natural):
    img = np.ascontiguousarray(np.tile(natural, (2, 2, 1))[:80, :112])
    data = api.encode(img, "lossless", model=tiny_model, tile=48)
    full = C.peek_header(data)
    assert len(full.tile_crcs) == full.n_tiles * full.n_streams
    cut = C.peek_header(api.truncate(data, "rec2"))
    assert cut.tile_crcs == full.tile_crcs[:2 * full.n_tiles]


def test_tiles_off_the_models_grid_are_refused(tiny_model, natural):
    """The encoder writes tiles of a multiple of the model's `multiple`; a header with others
    (its CRCs right) would place latents wrongly across tiles: refused before any network runs."""
    img = np.ascontiguousarray(np.tile(natural, (2, 2, 1))[:80, :112])
    header, tiles, alpha = C.unpack(api.encode(img, "rec1", model=tiny_model, tile=48))
    header.tile_h = header.tile_w = 36
    n = header.n_tiles
    header.tile_crcs = (0,) * n
    with pytest.raises(FormatError, match="multiples"):
        files.decode_rgb(C.pack(header, [tiles[0]] * n, alpha), model=tiny_model)


def test_out_of_memory_across_tiles_is_a_memory_error(tiny_model, natural, monkeypatch):
    img = np.ascontiguousarray(np.tile(natural, (2, 2, 1))[:80, :112])
    data = api.encode(img, "rec2", model=tiny_model, tile=48)

    def fail(*a, **k):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(SL, "reconstruct", fail)
    with pytest.raises(MemoryError):
        files.decode_rgb(data, model=tiny_model)


@pytest.mark.parametrize("H, W, multiple", [(816, 1224, 16), (1300, 2100, 64), (4000, 6000, 64), (16, 9000, 16), (33, 47, 1),
                                           (16384, 16384, 64), (4096, 65472, 64), (65472, 4096, 64)])
def test_reconstruction_windows_cover_the_image_once_within_the_memory_bound(H, W, multiple):
    """The windows' cores tile the image exactly once, on the model's grid; each read box is its
    core grown by the margin and at most (window + 2 margin)^2 pixels; a photo that fits is one
    window, and no grid reads fewer pixels than the one chosen."""
    window, margin = 1024, 128
    boxes = SL.windows(H, W, window, margin, multiple)
    rows = sorted({(t, b) for (t, _, b, _), _ in boxes})
    cols = sorted({(l, r) for (_, l, _, r), _ in boxes})
    for spans, n in ((rows, H), (cols, W)):  # the cores are a grid of spans that partition each side
        assert spans[0][0] == 0 and spans[-1][1] == n and all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    assert sorted((t, l, b, r) for (t, l, b, r), _ in boxes) == sorted((t, l, b, r) for t, b in rows for l, r in cols)
    for (t, l, b, r), (rt, rl, rb, rr) in boxes:
        assert t % multiple == 0 and l % multiple == 0
        assert (rt, rl, rb, rr) == (max(0, t - margin), max(0, l - margin), min(H, b + margin), min(W, r + margin))
        assert (rb - rt) * (rr - rl) <= (window + 2 * margin) ** 2
    if H * W <= window * window:
        assert len(boxes) == 1
    old = sum((min(H, t + window + margin) - max(0, t - margin)) * (min(W, l + window + margin) - max(0, l - margin))
              for t in range(0, H, window) for l in range(0, W, window))  # square 1024 cores, as before
    assert sum((rb - rt) * (rr - rl) for _, (rt, rl, rb, rr) in boxes) <= old
    square = SL.windows(H, W, window, margin, multiple, shaped=False)  # the DenseNet family's, as before
    assert [core for core, _ in square] == [(t, l, min(t + window, H), min(l + window, W))
                                           for t in range(0, H, window) for l in range(0, W, window)]
