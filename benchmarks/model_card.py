"""Write a shipped model's card (models/NAME.md) and training-curve PNG from measured facts:
the weights file's metadata, the run's CSV log, and benchmark JSON when present.

    python -m benchmarks.model_card models/selfvae-downscale.safetensors --run runs/ds2 \
        --data "BSDS500 train+val (300 photos)" --command "selfcodec train ..." [--kodak benchmarks/results/kodak.json]
"""

import argparse
import csv
import json
import os
from pathlib import Path

from safetensors import safe_open

from selfcodec.codec import smoothing as SM
from selfcodec.model.checkpoint import load_model, read_metadata
from selfcodec.provenance import cpu_model
from selfcodec.train.loop import plot_log


def stored_dtypes(weights: Path) -> list:
    with safe_open(str(weights), framework="pt") as f:
        return sorted({str(f.get_slice(k).get_dtype()) for k in f.keys()})


def last_terms(log: Path, n: int = 10) -> dict:
    """Mean of the last n logged rows of each logged term."""
    rows = list(csv.DictReader(open(log)))[-n:]
    keys = [k for k in (rows[0] if rows else {}) if k not in ("step", "seconds", "lr", "img_per_s")]
    out = {}
    for k in keys:
        vals = [float(r[k]) for r in rows if r.get(k) not in (None, "")]
        if vals:
            out[k] = sum(vals) / len(vals)
    return out


def terms_table(terms: dict, cfg: dict, quant: str = "noise") -> list:
    """The final terms as markdown: the ELBO's terms, or a rate-distortion run's rate and PSNR per level."""
    if not cfg.get("rd_lambdas"):
        keys = ("nelbo", "re_x", "re_y", "kl_u", "kl_z", "u_code")
        return ["Final loss terms (mean of the last logged rows, bits per dimension of x, on training crops):", "",
                "| -ELBO | RE_x | RE_y | KL_u | KL_z | û under the coding prior |", "|---|---|---|---|---|---|",
                "| " + " | ".join(f"{terms.get(k, float('nan')):.4f}" for k in keys) + " |"]
    how = {"round": "latents rounded as the codec does",
           "mixed": "rates of the noisy latents, x̂ from latents rounded as the codec does",
           "noise": "the training noise in place of rounding"}[quant]
    lines = [f"Final terms (mean of the last logged rows, on 128x128 training crops with {how}; bits per dimension "
             "= bits per pixel / 3):", "",
             "| level | lambda | û bpd | ẑ bpd | û + ẑ bits per pixel | PSNR of x̂ dB |", "|---|---|---|---|---|---|"]
    for i, lam in enumerate(cfg["rd_lambdas"]):
        bu, bz = terms.get(f"bpp_u_l{i}", float("nan")), terms.get(f"bpp_z_l{i}", float("nan"))
        lines.append(f"| {i + 1} | {lam} | {bu / 3:.4f} | {bz / 3:.4f} | {bu + bz:.4f} | "
                     f"{terms.get(f'psnr_l{i}', float('nan')):.2f} |")
    lines += ["", f"Code lengths the other modes use, over all levels: -log2 p(x | ŷ, ẑ) {terms.get('re_x', float('nan')):.4f} "
              f"bpd, -log2 p(y | û) {terms.get('re_y', float('nan')):.4f} bpd (per dimension of x), RealNVP's fit to "
              f"û {terms.get('flow_u', float('nan')):.4f} bpd."]
    return lines


def kodak_rows(data: dict, name: str) -> list:
    meta = data.get("meta", {})
    if meta.get("model") not in (None, name) and name not in str(meta.get("model", "")):
        return []
    rows = []
    for codec, entry in sorted(data.get("codecs", {}).items()):
        if not codec.startswith("selfcodec") or codec.endswith("-best"):
            continue
        for p in entry.get("points", []):
            rows.append((codec.replace("selfcodec-", ""), p.get("param"), p.get("bpp"), p.get("psnr"), p.get("ms_ssim")))
    return rows


def architecture(cfg: dict) -> str:
    """The network in one line: the fast family's widths, or the DenseNet's."""
    head = f"`{cfg['name']}`: transform `{cfg['transform']}`, {cfg.get('scales', cfg.get('levels'))} self-supervised level(s), "
    if cfg.get("network") == "fast":
        hyper = (f"a hyperprior for û (v: {cfg['u_hyper']} ch at 1/{2 ** (cfg['latent_down'] + 2)} of x, factorized; "
                 f"û's mean and scale per element from v̂), " if cfg.get("u_hyper") else "û under a factorized prior, ")
        full = (f"a refine filter of {cfg['refine']} 3x3 layer(s) of {cfg.get('refine_ch', 16)} at full resolution"
                if cfg.get("refine") else "no layer at full resolution")
        ctx = (f", pixel contexts for the images sent exactly (x: {cfg.get('x_context', 0)}, y: {cfg.get('y_context', 0)} "
               f"3x3 layer(s) of {cfg.get('context_ch', 64)} at half resolution"
               + (", a linear 3x3 path beside them" if cfg.get("context_skip") else "")
               + (", the RGB coupling centred on each channel's predicted value" if cfg.get("centred_coupling") else "")
               + ")" if cfg.get("x_context") or cfg.get("y_context") else "")
        if cfg.get("refine_half"):
            full += f", then one of {cfg['refine_half']} 3x3 layer(s) of {cfg.get('refine_half_ch', 32)} at half resolution"
        return (head + f"fast networks (`selfcodec/model/fast.py`: 5x5 stride-2 convolutions with GDN, 4x4 transposed ones "
                f"with inverse GDN; widths {cfg['ch']} at 1/8 and below, {cfg['mid_ch']} at 1/4, {cfg['head_ch']} at 1/2, "
                f"{full}), latents u {cfg['u_ch']} ch / z {cfg['z_ch']} ch at "
                f"1/{2 ** cfg['latent_down']} of x, {hyper}{cfg['mixtures']} logistic mixture(s), means offset from a "
                f"{cfg.get('up_base', 'bilinear')} upscale of y{ctx}, "
                f"RealNVP {cfg['flow_blocks']} blocks, posterior `{cfg['posterior']}`{_smoothing(cfg)}")
    return (head + f"{cfg['ch']} channels, DenseNet growth {cfg['growth']} x {cfg.get('block_convs', cfg.get('layers'))} layers, latents u "
            f"{cfg['u_ch']} ch / z {cfg['z_ch']} ch at 1/{2 ** cfg['latent_down']} of their image, {cfg['mixtures']} "
            f"logistic mixtures, RealNVP {cfg['flow_blocks']} blocks, posterior `{cfg['posterior']}`")


def _smoothing(cfg: dict) -> str:
    """The decoder's smoothing of x̂ (selfcodec/codec/smoothing.py), if the model has a table."""
    table = cfg.get("smooth") or {}
    if not table:
        return ""
    rows = "; ".join(f"{mode} {', '.join(f'{s:g}' for s in sigmas)}" for mode, sigmas in table.items())
    levels = max(len(sigmas) for sigmas in table.values())
    return (f"; x̂ smoothed by a bilateral filter (diameter {SM.DIAMETER}, space sigma {SM.SPACE_SIGMA:g}) of range "
            f"sigma per level 1-{levels} ({rows}; `python -m benchmarks.tune_smoothing`)")


def architecture_row(cfg: dict) -> str:
    """The card's architecture row: the network, and what the DenseNet family adds to it."""
    dense = cfg.get("network") != "fast"  # (the fast family's filter and contexts are in its architecture line)
    return (f"| architecture | {architecture(cfg)}"
            + (f", a {cfg['refine']}-dense-block residual filter on x̂ at full resolution (rec2, crec)" if dense and cfg.get("refine") else "")
            + (", x given y with each 2x2 block's last pixel restricted to the values that keep y (`y_consistent`)"
               if cfg.get("y_consistent") else "")
            + (f", x decoded in three stages per 2x2 block, each later stage's mixture from a context network "
               f"({cfg['x_context']} dense block(s)) over the pixels decoded before (`x_context`)" if dense and cfg.get("x_context") else "")
            + (f", the coarsest image decoded in the same three stages ({cfg['y_context']} dense block(s) per "
               f"context network, `y_context`)" if dense and cfg.get("y_context") else "")
            + " |")


def write_card(weights: Path, run: Path, data_desc: str, command: str, kodak: Path | None, notes: str,
               quant: str = "noise") -> Path:
    meta = read_metadata(weights)
    info = json.loads(meta.get("info", "{}"))
    model = load_model(weights)
    cfg = json.loads(meta["config"])
    n_params = sum(p.numel() for p in model.parameters())
    curve = weights.with_name(weights.stem + "_curve.png")
    plot_log(run / "log.csv", curve, f"{weights.stem}: training loss terms")
    terms = last_terms(run / "log.csv")
    lines = [
        f"# {weights.stem}",
        "",
        "Generated by `benchmarks/model_card.py` from the weights' metadata, the training log and the benchmark JSON.",
        "",
        "| | |",
        "|---|---|",
        architecture_row(cfg),
        "| objective | " + (f"rate-distortion: bits per pixel of û + ẑ + lambda x MSE of the rec2 reconstruction, lambda "
                             f"{', '.join(map(str, cfg['rd_lambdas']))} for levels 1-{len(cfg['rd_lambdas'])} (a learned "
                             "quantization step per level and latent channel), plus a small weight on the images' code "
                             "lengths |" if cfg.get("rd_lambdas") else "the ELBO (bits per dimension) |"),
        f"| parameters | {n_params:,} |",
        f"| weights | `{weights.name}`, {weights.stat().st_size / 1e6:.1f} MB, stored as {', '.join(stored_dtypes(weights))}, computed in fp32 |",
        f"| data | {data_desc} |",
        f"| steps | {info.get('step', '?')} |",
        f"| training wall time | {info.get('train_seconds', 0) / 3600:.2f} h |",
        f"| hardware | {cpu_model()}, {os.cpu_count()} cores, CPU only |",
        f"| command | `{command}` |",
        "",
        *terms_table(terms, cfg, quant),
        "",
        f"![training curve]({curve.name})",
        "",
    ]
    kodak_data = json.loads(kodak.read_text()) if kodak and kodak.exists() else {}
    rows = kodak_rows(kodak_data, cfg["name"]) if kodak_data else []
    if rows:
        meta = kodak_data["meta"]
        lines += [f"Kodak ({meta['n_images']} images{', ' + str(meta['crop']) + ' px crops' if meta.get('crop') else ''}, "
                  f"averages; from `{kodak}`, BD-rate and JPEG in the same file):", "",
                  "| mode | level | bpp | PSNR dB | MS-SSIM |", "|---|---|---|---|---|"]
        lines += [f"| {m} | {lv} | {b:.4f} | {p:.2f} | {s:.4f} |" for m, lv, b, p, s in rows]
        best = kodak_data["codecs"].get("selfcodec-best", {})
        if best.get("bd_rate_vs_jpeg420_pct") is not None:
            front = best.get("bd_rate_pareto_front_vs_jpeg420_pct")
            lines += ["", f"Best of modes against JPEG 4:2:0: BD-rate {best['bd_rate_vs_jpeg420_pct']:+.1f} % (PSNR) "
                          f"over the overlapping range (negative is better)"
                      + (f"; the curve is the upper convex hull of the (mode, level) points, over their Pareto "
                         f"front instead {front:+.1f} %." if front is not None else ".")]
        lines.append("")
    else:
        lines += ["Kodak results: not measured for these weights yet.", ""]
    if notes:
        lines += [notes, ""]
    out = weights.with_suffix(".md")
    out.write_text("\n".join(lines))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("weights", type=Path)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--command", required=True)
    ap.add_argument("--kodak", type=Path, default=None)
    ap.add_argument("--notes", default="")
    ap.add_argument("--quant", choices=["noise", "round", "mixed"], default="noise", help="the run's train --quant")
    a = ap.parse_args()
    print(write_card(a.weights, a.run, a.data, a.command, a.kodak, a.notes, a.quant))


if __name__ == "__main__":
    main()
