"""Layered lossless files: every prefix that ends after a layer decodes as a lower mode's file,
truncate() cuts without the model, decode(partial=True) reads a file cut anywhere."""

import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from selfcodec import api, zoo

from selfcodec.codec import layered as layers
from selfcodec.codec import container as C
from selfcodec.errors import ChecksumError, CodecError, FormatError


def _psnr(a, b):
    mse = np.mean((a.astype(float) - b) ** 2)
    return np.inf if mse == 0 else 10 * np.log10(255 ** 2 / mse)


@pytest.fixture(scope="module")
def image(natural):
    return np.ascontiguousarray(np.concatenate([natural, natural[:, ::-1]], 1)[:48, :96])  # 96 x 48, two tiles of 48


@pytest.mark.parametrize("which", ["downscale", "downscale-3l", "vae"])
def test_every_prefix_is_a_lower_modes_file_that_decodes(all_tiny_models, which, image):
    model = all_tiny_models[which]
    data = api.encode(image, "lossless", 2, model=model, tile=48)
    info = api.info(data)
    assert info["tiles"] >= 2 and [m["mode"] for m in info["layers"]] == layers.modes_of(zoo.load(model)[0].cfg.scales)
    assert np.array_equal(api.decode(data, model=model, as_array=True), image)
    sizes = [len(data)]
    for layer in reversed(info["layers"][:-1]):
        cut = api.truncate(data, layer["mode"])
        assert len(cut) < sizes[-1]
        sizes.append(len(cut))
        rgb, meta = api.decode_rgb(cut, model=model)
        assert meta.mode == layer["mode"] == api.info(cut)["mode"]
        if layer["mode"] in ("rec1", "rec2"):  # the same latents as the plain file of the mode and level
            plain = api.encode_report(image, layer["mode"], 2, model=model, tile=48)
            assert np.array_equal(rgb, plain["recon"])
            n_tiles, n_layers = api.info(cut)["tiles"], len(api.info(cut)["layers"])
            # its stream lengths, layer CRCs and (format version 6) a CRC per layer and tile beside the plain file's one per tile
            assert len(cut) <= len(plain["data"]) + 8 * n_tiles + 4 * n_layers + 4 * n_tiles * (n_layers - 1)


def test_a_lossless_file_without_a_model_holds_the_defaults_lossy_files(natural):
    """lossless uses the default model: the file's rec2 and rec1 cuts decode as the default's own
    rec2 and rec1 files of the level do."""
    img = np.ascontiguousarray(natural[:48, :64])
    data = api.encode(img, "lossless", 3, stored_fallback=False)
    for mode in ("rec2", "rec1"):
        assert np.array_equal(api.decode(api.truncate(data, mode), as_array=True),
                              api.decode(api.encode(img, mode, 3), as_array=True)), mode


def test_lower_layers_of_a_real_model_are_no_better(natural):
    model = "selfvae-downscale-elbo"
    img = np.ascontiguousarray(natural[:32, :64])
    data = api.encode(img, "lossless", 3, model=model)
    psnrs = [_psnr(api.decode(api.truncate(data, m), model=model, as_array=True), img) for m in ("crec", "rec2")]
    assert psnrs[0] >= psnrs[1]


def test_truncation_runs_no_model_and_imports_no_torch(tiny_model, image, tmp_path, monkeypatch):
    data = api.encode(image, "lossless", 2, model=tiny_model)
    monkeypatch.setattr(zoo, "load", lambda *a, **k: pytest.fail("truncate loaded a model"))
    cut = api.truncate(data, "rec2")
    monkeypatch.undo()
    (tmp_path / "a.svae").write_bytes(data)
    code = ("import sys; from selfcodec.codec.layered import truncate; "
            f"d = truncate(open({str(tmp_path / 'a.svae')!r}, 'rb').read(), 'rec2'); "
            "assert 'torch' not in sys.modules; sys.stdout.buffer.write(d)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True).stdout
    assert out == cut


def test_a_file_cut_anywhere_decodes_to_its_last_whole_layer(tiny_model, image):
    data = api.encode(image, "lossless", 2, model=tiny_model, tile=48)
    ends = [layer["ends_at_byte"] for layer in api.info(data)["layers"]]
    modes = [layer["mode"] for layer in api.info(data)["layers"]]
    want = {m: api.decode(api.truncate(data, m), model=tiny_model, as_array=True) for m in modes}
    header_end = C.header_size(data)
    for n in sorted({header_end, ends[0] - 1, *ends, *range(header_end, len(data), 997)}):
        if n < ends[0]:
            with pytest.raises(FormatError, match="first layer"):
                api.decode(data[:n], model=tiny_model, partial=True)
            continue
        last = max(i for i, e in enumerate(ends) if e <= n)
        rgb, meta = api.decode_rgb(data[:n], model=tiny_model, partial=True)
        assert meta.mode == modes[last] and np.array_equal(rgb, want[modes[last]]), n
        if n < len(data):
            with pytest.raises(FormatError, match="truncated"):
                api.decode(data[:n], model=tiny_model)


def test_bad_cuts_and_files_without_layers_are_refused(tiny_model, image):
    data = api.encode(image, "lossless", 2, model=tiny_model)
    rec2 = api.truncate(data, "rec2")
    with pytest.raises(CodecError, match="cut only to a lower mode"):
        api.truncate(rec2, "crec")
    with pytest.raises(CodecError, match="cannot cut"):
        api.truncate(data, "cgen")
    plain = api.encode(image, "lossless", 2, model=tiny_model, layered=False)
    assert api.info(plain)["format_version"] == 1 and "layers" not in api.info(plain)
    assert np.array_equal(api.decode(plain, model=tiny_model, as_array=True), image)
    for call in (lambda: api.truncate(plain, "rec2"), lambda: api.decode(plain[:-5], model=tiny_model, partial=True)):
        with pytest.raises(FormatError, match="not a layered file"):
            call()
    with pytest.raises(CodecError, match="only lossless"):
        api.encode(image, "rec2", model=tiny_model, layered=True)


def test_a_damaged_layer_is_caught_by_its_crc_in_a_partial_file(tiny_model, image):
    data = bytearray(api.encode(image, "lossless", 2, model=tiny_model))
    end = api.info(bytes(data))["layers"][1]["ends_at_byte"]
    data[end - 3] ^= 0x40  # inside ẑ: a partial decode cannot use the payload CRC
    with pytest.raises((ChecksumError, FormatError)):
        api.decode(bytes(data[:end + 10]), model=tiny_model, partial=True)


def test_cli_truncate_info_and_partial_decode(tiny_model, image, tmp_path):
    from selfcodec.cli.main import main

    src = tmp_path / "a.svae"
    src.write_bytes(api.encode(image, "lossless", 2, model=tiny_model))
    r = CliRunner().invoke(main, ["truncate", str(src), "-m", "rec2", "-o", str(tmp_path / "b.svae")])
    assert r.exit_code == 0, r.output
    assert api.info((tmp_path / "b.svae").read_bytes())["mode"] == "rec2"
    r = CliRunner().invoke(main, ["info", str(src)])
    assert r.exit_code == 0 and "up to byte" in r.output and "crec" in r.output
    cut = tmp_path / "cut.svae"
    cut.write_bytes(src.read_bytes()[:-7])
    r = CliRunner().invoke(main, ["decode", str(cut), "-o", str(tmp_path / "c.png"), "--model", tiny_model])
    assert r.exit_code == 4 and len(r.output.strip().splitlines()) == 1
    r = CliRunner().invoke(main, ["decode", str(cut), "--partial", "-o", str(tmp_path / "c.png"), "--model", tiny_model])
    assert r.exit_code == 0 and "up to crec" in r.output and (tmp_path / "c.png").is_file()
