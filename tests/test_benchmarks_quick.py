"""The quick Kodak benchmark runs end to end on synthetic images (no ../shared access)."""
import json
import sys
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


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A tiny random-init selfvae-downscale saved to tmp (the shipped weights are not needed)."""
    import torch

    from selfcodec.model.checkpoint import save_model
    from selfcodec.model.registry import build_model, make_config
    from selfcodec.nn.blocks import data_dependent_init

    torch.manual_seed(0)
    m = build_model(make_config("selfvae-downscale", ch=16, growth=8, block_convs=1, mixtures=3, z_ch=8, u_ch=4,
                            flow_hidden=8, flow_blocks=1))
    data_dependent_init(m, torch.randint(0, 256, (2, 3, 32, 32)).float())
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_model(m, path)
    return str(path)


def test_kodak_rd_quick(tmp_path, tiny_model):
    from benchmarks import kodak_rd
    from selfcodec import api

    data = _write_images(tmp_path / "imgs")
    out = tmp_path / "out"
    res = kodak_rd.main(["--quick", "--data", str(data), "--out", str(out), "--model", tiny_model,
                         "--no-anchors", "--no-progress"])
    assert (out / "kodak.json").is_file() and (out / "kodak_rd.png").stat().st_size > 1000
    md = (out / "kodak.md").read_text()
    assert md.startswith("# Kodak") and "WebP" in md and "selfcodec rec2" in md
    j = json.loads((out / "kodak.json").read_text())
    assert {"meta", "codecs", "skipped", "anchors", "notes", "selfcodec_vs_webp", "speed"} <= set(j)
    for k in ("date", "command", "platform", "cpu_model", "versions", "wall_s"):
        assert k in j["meta"]
    assert j["meta"]["n_images"] == 2
    ref = j["codecs"]["jpeg420"]
    assert ref["bd_rate_vs_jpeg420_pct"] == pytest.approx(0.0, abs=1e-6)
    assert len(ref["points"]) == 3 and all(p["n_images"] == 2 for p in ref["points"])
    for name, c in j["codecs"].items():
        assert c["n_errors"] == 0, (name, c["errors"])
        for p in c["points"]:
            assert p["bpp"] > 0 and 5 < p["psnr"] <= 100 and 0 < p["ms_ssim"] <= 1
        if name != "selfcodec-best":
            assert c["timing"]["enc_s_per_image"] > 0
    lossy = [m for m in api.MODES if m != "lossless"]
    assert set(lossy) == {"rec1", "rec2", "cgen", "crec"}
    levels = j["meta"]["selfcodec"]["levels"]
    assert api.DEFAULT_LEVEL in levels and len(levels) >= 3
    for m in lossy:
        c = j["codecs"][f"selfcodec-{m}"]
        assert [p["param"] for p in sorted(c["points"], key=lambda p: p["param"])] == levels
        assert all(p["n_images"] == 2 for p in c["points"])
        assert c["decode_check"]["n_decoded"] == 2 and c["decode_check"]["n_equal_to_recon"] == 2
        assert c["timing"]["dec_s_per_image"] > 0 and c["timing"]["level"] == api.DEFAULT_LEVEL
        acc = c["streams_vs_estimate"]
        assert set(acc) == {str(lv) for lv in levels}
        for s in acc.values():
            assert s["streams"] and all(v["real_bytes"] > 0 and v["estimated_bits"] > 0 for v in s["streams"].values())
            assert s["file_bytes"] >= sum(v["real_bytes"] for v in s["streams"].values())
        assert j["speed"][f"selfcodec-{m}"]["enc_ratio_vs_webp"] > 0
        assert j["selfcodec_vs_webp"][f"selfcodec-{m}"]["dec_ratio"] > 0
    best = j["codecs"]["selfcodec-best"]
    assert best["points"] and all(p["mode"] in lossy for p in best["points"])
    bp = [p["psnr"] for p in best["points"]]
    assert bp == sorted(bp)  # a Pareto front rises with the rate
    assert "webp" in j["speed"] and j["speed"]["webp"]["enc_mpix_s"] > 0
    assert res["meta"]["quick"] is True


def test_pareto_and_hull():
    from benchmarks.kodak_rd import pareto_front, upper_hull

    pts = [{"bpp": b, "psnr": p} for b, p in [(0.1, 20), (0.2, 19), (0.3, 26), (0.5, 27), (0.6, 30), (1.0, 31)]]
    assert [p["bpp"] for p in pareto_front(pts)] == [0.1, 0.3, 0.5, 0.6, 1.0]
    assert [p["bpp"] for p in upper_hull(pts)] == [0.1, 0.3, 0.6, 1.0]


def test_figure_modes(tmp_path, tiny_model):
    from benchmarks import figure_modes
    from selfcodec import api

    out = tmp_path / "fig.png"
    r = figure_modes.main(["--crop", "48", "--model", tiny_model, "--out", str(out)])
    assert out.stat().st_size > 1000 and json.loads(out.with_suffix(".json").read_text())["meta"]["command"]
    assert [m["mode"] for m in r["modes"]] == list(api.MODES)
    assert r["modes"][-1]["exact"] and all(m["bpp"] > 0 for m in r["modes"])


def test_memory_small(tmp_path, tiny_model):
    from benchmarks import memory

    r = memory.main(["--size", "96x64", "--modes", "rec2", "--model", tiny_model, "--data", str(tmp_path / "none"),
                     "--out", str(tmp_path)])
    j = json.loads((tmp_path / "memory.json").read_text())
    run = j["full"]["modes"]["rec2"]
    assert run["encode"]["peak_rss_mib"] > 10 and run["decode"]["shape"] == [64, 96, 3]
    assert run["encode"]["bytes"] > 0 and r["meta"]["tile"] > 0


def test_update_readme(tmp_path, tiny_model):
    from benchmarks import kodak_rd, update_readme

    data = _write_images(tmp_path / "imgs", n=2, size=32)
    res = tmp_path / "results"
    kodak_rd.main(["--quick", "--data", str(data), "--out", str(res), "--model", tiny_model, "--no-anchors",
                   "--no-progress", "--codecs", "webp,selfcodec-rec2"])
    models = tmp_path / "models"
    models.mkdir()
    Image.new("RGB", (8, 8)).save(models / "tiny_curve.png")
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\nintro\n\n## Other\n\ntext\n")
    update_readme.main(["--readme", str(readme), "--results", str(res), "--models", str(models)])
    t1 = readme.read_text()
    assert t1.startswith("# x\n\nintro\n\n## Other\n\ntext\n") and "## Results" in t1
    body = t1[t1.index(update_readme.START):t1.index(update_readme.END)]
    assert "| selfcodec rec2 |" in body and "| WebP |" in body and "results/kodak_rd.png" in body
    assert "models/tiny_curve.png" in body and "lossless.json missing" in body
    assert json.loads((res / "kodak.json").read_text())["meta"]["command"] in body
    # a second run replaces the section in place; text outside the markers is kept
    readme.write_text(t1.replace("text\n", "edited by someone else\n", 1) + "\n## After\n")
    update_readme.main(["--readme", str(readme), "--results", str(res), "--models", str(models)])
    t2 = readme.read_text()
    assert t2.count(update_readme.START) == 1 and t2.count("## Results") == 1
    assert "edited by someone else" in t2 and t2.endswith("\n## After\n")


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


def test_proxy_rd_codes_crops_with_the_real_codec(tmp_path, tiny_model):
    from benchmarks import proxy_rd

    data = _write_images(tmp_path / "imgs")
    out = tmp_path / "proxy.json"
    proxy_rd.main([tiny_model, tiny_model, "--data", str(data), "--n", "2", "--crop", "32", "--levels", "1,5",
                   "--out", str(out)])
    res = json.loads(out.read_text())
    assert abs(res["results"][1]["bd_rate_vs_first_percent"]) < 1e-9  # the same model: no difference
    assert res["meta"]["images"] == 2 and res["meta"]["files"] == ["img00", "img01"]
    low, high = res["results"][0]["levels"]
    assert 0 < low["bpp"] < high["bpp"]  # finer steps cost more bits (an untrained model's pixels need not improve)
    assert all(5 < r["psnr"] < 99 for r in (low, high))


def test_kodak_rd_search_runs_rec2_with_the_latent_search(tmp_path):
    from benchmarks import kodak_rd

    from conftest import build_tiny

    model = str(build_tiny(tmp_path / "rd.safetensors", seed=3, rd_lambdas=(0.002, 0.004, 0.008, 0.016, 0.032)))
    out = tmp_path / "out"
    kodak_rd.main(["--quick", "--data", str(_write_images(tmp_path / "imgs")), "--out", str(out), "--model", model,
                   "--codecs", "jpeg420,selfcodec-rec2", "--search", "2", "--search-levels", "1,3",
                   "--no-anchors", "--no-progress"])
    j = json.loads((out / "kodak.json").read_text())
    c = j["codecs"]["selfcodec-rec2-search2"]
    assert c["n_errors"] == 0 and "search=2" in c["settings"]
    assert sorted(p["param"] for p in c["points"]) == [1, 3]
    assert c["decode_check"]["n_decoded"] == 2 and c["decode_check"]["n_equal_to_recon"] == 2
    assert j["meta"]["selfcodec"]["search"] == {"mode": "rec2-search2", "steps": 2, "levels": [1, 3]}
    assert {p["mode"] for p in j["codecs"]["selfcodec-best"]["points"]} <= {"rec2", "rec2-search2"}


def test_detail_crops_put_webp_at_the_same_size_beside_selfcodec(tmp_path, tiny_fast_models, monkeypatch):
    from benchmarks import detail_crops

    folder = tmp_path / "kodak"
    folder.mkdir()
    rng = np.random.default_rng(0)
    names = {name for _, name, _, _ in detail_crops.CROPS}
    for name in names:  # small stand-ins; the crops are moved inside them
        Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(folder / f"{name}.png")
    monkeypatch.setattr(detail_crops, "CROPS", [(w, n, 0, 0) for w, n, _, _ in detail_crops.CROPS])
    monkeypatch.setattr(detail_crops, "SIDE", 64)
    detail_crops.main(["--model", tiny_fast_models["selfvae-downscale"], "--data", str(folder), "--out", str(tmp_path)])
    res = json.loads((tmp_path / "detail_crops.json").read_text())
    assert len(res["crops"]) == len(detail_crops.CROPS) and (tmp_path / "detail_crops.png").exists()
    for row in res["crops"]:
        for rate in row["rates"]:
            assert rate["webp"]["bytes"] <= rate["selfcodec"]["bytes"] or rate["webp"]["quality"] == 0


def test_tune_smoothing_writes_a_table_per_mode_and_level(tmp_path, tiny_fast_models):
    from benchmarks import tune_smoothing

    from selfcodec import zoo

    model = tiny_fast_models["selfvae-downscale"]
    out = tmp_path / "smoothed.safetensors"
    tune_smoothing.main([model, "--data", str(_write_images(tmp_path / "imgs")), "--images", "2",
                         "--write", str(out), "--out", str(tmp_path)])
    res = json.loads((tmp_path / "smoothing.json").read_text())
    levels = len(zoo.load(model)[0].cfg.rd_lambdas)
    for mode in tune_smoothing.MODES:
        assert len(res["modes"][mode]["table"]) == levels
        assert all(s in tune_smoothing.SIGMAS for s in res["modes"][mode]["table"])
    assert zoo.load(str(out))[0].cfg.smooth == {m: tuple(float(s) for s in t) for m, t in res["meta"]["table"].items()}
    assert zoo.load(model)[0].cfg.smooth == {}  # the model tuned is left as it was
