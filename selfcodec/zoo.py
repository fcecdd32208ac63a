"""The registry of shipped models, by name; a path to a .safetensors file works too."""

from functools import lru_cache
from pathlib import Path

from .errors import CodecError

# The checkpoint module (torch) is imported where weights are read: finding a model by name
# stays torch-free, for `selfcodec info`.

MODELS_DIR = Path(__file__).resolve().parent / "models"
if not MODELS_DIR.is_dir():  # a source checkout: setup.cfg maps the repo's models/ here
    MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
DEFAULT_MODEL = "selfvae-downscale"
# Modes whose best shipped model is not the default (measured: see README "Models and training").
# None since 2026-12-03: the default's pixel contexts code lossless files smaller than the ELBO model
# (Kodak 3.792 bits per subpixel at level 3 against its 3.953), so a lossless file's lower layers are
# the default's files.
MODE_DEFAULTS: dict = {}


def available() -> list:
    return sorted(p.stem for p in MODELS_DIR.glob("*.safetensors"))


def model_path(model: str | Path | None) -> Path:
    """A shipped model's name, a file path, or None for the default model."""
    if model is None:
        model = DEFAULT_MODEL
    p = Path(model)
    if p.suffix == ".safetensors" or p.exists():
        if not p.is_file():
            raise CodecError(f"model file {p} does not exist")
        return p
    shipped = MODELS_DIR / f"{model}.safetensors"
    if not shipped.is_file():
        have = ", ".join(available()) or "none"
        raise CodecError(f"no shipped model named {model!r} (shipped: {have}); pass a .safetensors path with --model")
    return shipped


def default_for(mode: str) -> str:
    """The shipped model a mode uses when none is named (decoding reads it from the file)."""
    name = MODE_DEFAULTS.get(mode, DEFAULT_MODEL)
    return name if (MODELS_DIR / f"{name}.safetensors").is_file() else DEFAULT_MODEL


@lru_cache(maxsize=4)
def _load(path: str, mtime: float):
    from .model.checkpoint import load_model, weights_hash

    try:  # the shipped files fit their configurations (tests/test_modelfile.py checks them): only others are checked
        model = load_model(Path(path), check_fit=Path(path).parent != MODELS_DIR.resolve())
    except Exception as e:  # a damaged or foreign file: say so in one line
        raise CodecError(f"cannot load model {path}: {e}") from None
    return model, weights_hash(Path(path))


def load(model: str | Path | None = None):
    """(model in eval mode, 8-byte weights hash, name stored in .svae headers)."""
    path = model_path(model)
    net, digest = _load(str(path.resolve()), path.stat().st_mtime)
    return net, digest, path.stem[:64]  # a shipped model's name is its file's (a renamed earlier default keeps its config)


def find_by_hash(digest: bytes) -> str | None:
    """The name of the shipped model whose weights hash is `digest`, if one is."""
    from .model.checkpoint import weights_hash

    for name in available():
        if weights_hash(MODELS_DIR / f"{name}.safetensors") == digest:
            return name
    return None


def load_any(spec: str | Path):
    """A training run's folder (its EMA weights), a model file or a shipped model's name ->
    the model in eval mode (for evaluating checkpoints, not for coding: no hash, no name)."""
    if Path(spec).is_dir():
        from .train.loop import ema_model

        return ema_model(Path(spec))
    return load(spec)[0]
