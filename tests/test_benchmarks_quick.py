"""The quick Kodak benchmark runs end to end on synthetic images (no ../shared access)."""
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

pytest.importorskip("imagecodecs")
pytest.importorskip("matplotlib")


def _write_images(folder: Path, n=2, size=64):
    folder.mkdir()
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size]
    for i in range(n):
        base = np.stack([x * 4, y * 4, (x + y) * 2 + 30 * i], -1).astype(float)
        base += 40 * np.sin(x / (3 + i))[..., None] + rng.normal(0, 6, base.shape)
        Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(folder / f"img{i:02d}.png")
    return folder


def test_kodak_rd_quick(tmp_path):
    from benchmarks import kodak_rd

    data = _write_images(tmp_path / "imgs")
    out = tmp_path / "out"
    res = kodak_rd.main(["--quick", "--data", str(data), "--out", str(out), "--no-selfcodec",
                         "--no-anchors", "--no-progress"])
    assert (out / "kodak.json").is_file() and (out / "kodak_rd.png").stat().st_size > 1000
    assert (out / "kodak.md").read_text().startswith("# Kodak")
    j = json.loads((out / "kodak.json").read_text())
    assert {"meta", "codecs", "skipped", "anchors", "notes", "selfcodec_vs_webp"} <= set(j)
    for k in ("date", "command", "platform", "cpu_model", "versions"):
        assert k in j["meta"]
    assert j["meta"]["n_images"] == 2
    ref = j["codecs"]["jpeg420"]
    assert ref["bd_rate_vs_jpeg420_pct"] == pytest.approx(0.0, abs=1e-6)
    assert len(ref["points"]) == 3 and all(p["n_images"] == 2 for p in ref["points"])
    for name, c in j["codecs"].items():
        assert c["n_errors"] == 0, (name, c["errors"])
        for p in c["points"]:
            assert p["bpp"] > 0 and 10 < p["psnr"] <= 100 and 0 < p["ms_ssim"] <= 1
        assert c["timing"]["enc_s_per_image"] > 0
    assert res["meta"]["quick"] is True


def test_kodak_rd_selfcodec_hook(tmp_path, monkeypatch):
    """A stand-in selfcodec.api is picked up as extra codecs with a WebP time ratio."""
    import io

    from benchmarks import kodak_rd

    def encode(img, mode="fake", level=0, model=None):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=20 + 20 * level)
        return buf.getvalue()

    def decode(data, as_array=True):
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))

    fake = types.ModuleType("selfcodec.api")
    fake.encode, fake.decode, fake.MODES, fake.LEVELS = encode, decode, ["fake", "lossless"], [0, 1, 2, 3]
    monkeypatch.setitem(sys.modules, "selfcodec.api", fake)
    data = _write_images(tmp_path / "imgs")
    out = tmp_path / "out"
    kodak_rd.main(["--quick", "--data", str(data), "--out", str(out), "--no-anchors", "--no-progress",
                   "--codecs", "webp,selfcodec-fake"])
    j = json.loads((out / "kodak.json").read_text())
    assert set(j["codecs"]) == {"jpeg420", "webp", "selfcodec-fake"}
    assert [p["param"] for p in j["codecs"]["selfcodec-fake"]["points"]] == [0, 2, 3]
    assert j["selfcodec_vs_webp"]["selfcodec-fake"]["enc_ratio"] > 0


def test_lossless_quick(tmp_path):
    from benchmarks import lossless

    data = _write_images(tmp_path / "imgs")
    atlas = np.random.default_rng(1).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    Image.fromarray(atlas).save(tmp_path / "atlas.png")
    out = tmp_path / "out"
    lossless.main(["--quick", "--data", str(data), "--cifar", str(tmp_path / "atlas.png"), "--out", str(out),
                   "--no-selfcodec", "--no-anchors", "--no-progress"])
    j = json.loads((out / "lossless.json").read_text())
    assert j["meta"]["cifar10"]["n_images"] == 6
    for name, r in j["kodak"].items():
        assert r["not_exact"] == 0 and r["n_errors"] == 0 and r["bits_per_subpixel_total"] > 0
    assert j["cifar10"]["png"]["bits_per_subpixel_total"] > 7.5  # random noise does not compress


def test_anchors_parser():
    from benchmarks import anchors

    text = """## Kodak, lossy

**JPEG (Pillow 7.1.2)** (`results/image/kodak/jpeg.json`)

| bpp | PSNR-RGB dB | MS-SSIM-RGB | enc s | dec s |
|---|---|---|---|---|
| 0.3 | 26.0 | 0.88 | 0.01 | 0.005 |
| 0.2 | 24.0 | 0.80 | 0.01 | 0.005 |

- mbt2018: 0.1→0.93/25.5; 0.2→0.95/27.0

## Lossless, bits per dimension

| Method | CIFAR-10 |
|---|---|
| PNG | 5.87 |
"""
    c = anchors.lossy_curves(text)
    assert c["jpeg"]["bpp"] == [0.2, 0.3] and c["jpeg"]["psnr"] == [24.0, 26.0]
    assert c["mbt2018-msssim"]["kind"] == "ms-ssim"
    assert anchors.lossless_tables(text)["by_method"]["PNG"]["CIFAR-10"] == 5.87
