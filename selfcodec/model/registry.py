"""Models by name, in one place: the paper's presets, the network families that build them
(each registers itself in family.FAMILIES on import), and build_model. The shipped weights are
in zoo.py."""

from . import densenet, fast  # noqa: F401 (importing a family registers it)
from .base import Config, FAMILIES

PRESETS = {
    "vae": dict(name="vae", transform="none", scales=0),
    "selfvae-downscale": dict(name="selfvae-downscale", transform="downscale", scales=1),
    "selfvae-sketch": dict(name="selfvae-sketch", transform="sketch", scales=1),
    "selfvae-downscale-3l": dict(name="selfvae-downscale-3l", transform="downscale", scales=2),
}
"""Model names of the paper. The 3-level model has K = 2 self-supervised images plus x."""


FAST = dict(network="fast", ch=128, mid_ch=64, head_ch=32, latent_down=4, u_ch=96, z_ch=128, mixtures=3)
"""The fast family's defaults, applied over a preset by make_config(preset, network="fast")."""


def make_config(preset: str, **overrides) -> Config:
    """A preset's configuration with some fields changed (`name` too, for a variant); with
    network="fast", the fast family's widths unless overridden too."""
    if preset not in PRESETS:
        raise ValueError(f"unknown model {preset!r}; choose one of {', '.join(PRESETS)}")
    family = FAST if overrides.get("network") == "fast" else {}
    return Config.of(**{**PRESETS[preset], **family, **overrides})


def build_model(cfg: Config):
    """The model of a configuration, in the network family it names."""
    if cfg.network not in FAMILIES:
        raise ValueError(f"unknown network family {cfg.network!r}; choose {' or '.join(sorted(FAMILIES))}")
    return FAMILIES[cfg.network](cfg)
