"""Training and evaluation images: any folder of images, and the CIFAR-10 atlases of
../shared/data (a 3200x3200 PNG holds a 100x100 grid of 32x32 images)."""

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm"}


def data_root() -> Path:
    """Where named sets (cifar10, bsds500, kodak) live: $SELFCODEC_DATA or ../shared/data."""
    env = os.environ.get("SELFCODEC_DATA")
    if env:
        return Path(env)
    for base in (Path.cwd(), Path(__file__).resolve().parents[1]):
        cand = base.parent / "shared" / "data"
        if cand.is_dir():
            return cand
    return Path("../shared/data")


def read_atlas(path: Path) -> np.ndarray:
    a = np.asarray(Image.open(path).convert("RGB"))
    n = a.shape[0] // 32
    return a.reshape(n, 32, n, 32, 3).transpose(0, 2, 1, 3, 4).reshape(n * n, 32, 32, 3)


def cifar10(split: str = "train", root: Path | None = None) -> np.ndarray:
    root = Path(root or data_root() / "cifar10")
    names = sorted(root.glob("train_*.png")) if split == "train" else [root / "test.png"]
    if not names or not names[0].exists():
        raise FileNotFoundError(f"no CIFAR-10 {split} atlases in {root}")
    return np.concatenate([read_atlas(p) for p in names])


def image_files(folder: Path) -> list:
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def load_folder(folder: Path, files: slice = slice(None)) -> list:
    out = []
    for p in image_files(folder)[files]:
        try:
            out.append(np.asarray(Image.open(p).convert("RGB")))
        except (OSError, ValueError) as e:  # one bad file should not stop a training run
            warnings.warn(f"skipping unreadable image {p}: {e}")
    if not out:
        raise FileNotFoundError(f"no readable images in {folder}")
    return out


def resolve(spec: str) -> list:
    """'cifar10', 'cifar10-test', a named set under the data root ('bsds500', or 'bsds500/test'),
    or a path -> a list of uint8 HxWx3 arrays (CIFAR as one N x 32 x 32 x 3 array in a list).
    'SET@0.6' downscales each image of SET by 0.6 (area averaging): for photos that were JPEG
    compressed at their size, so a codec does not learn to reproduce the block artefacts.
    'SET[a:b]' keeps the folder's files a..b-1 in sorted order: 'bsds500/test[24:]' leaves out
    the 24 photos the benchmarks measure (benchmarks/proxy_rd.py, the real-photo benchmark)."""
    if "@" in spec:
        name, scale = spec.rsplit("@", 1)
        return [downscale_image(a, float(scale)) for a in resolve(name)]
    files = slice(None)
    if spec.endswith("]") and "[" in spec:
        spec, sel = spec[:-1].rsplit("[", 1)
        files = _file_slice(sel)
    if spec in ("cifar10", "cifar10-train"):
        return [cifar10("train")]
    if spec == "cifar10-test":
        return [cifar10("test")]
    path = Path(spec)
    if not path.exists():
        path = data_root() / spec
    if path.is_dir() and list(path.glob("train_*.png")):
        if files != slice(None):
            raise ValueError("a file range is for folders of images, not the CIFAR-10 atlases")
        return [cifar10("train", path)]
    return load_folder(path, files)


def _file_slice(sel: str) -> slice:
    """'24:' or '0:100' -> a slice of a folder's sorted files."""
    parts = sel.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        return slice(*(int(p) if p.strip() else None for p in parts))
    except ValueError:
        raise ValueError(f"a file range reads [start:stop] with integers, not [{sel}]") from None


def as_list(images: list) -> list:
    """Flatten stacked arrays (CIFAR) into a list of single images."""
    out = []
    for a in images:
        out.extend(a if a.ndim == 4 else [a])
    return out


def downscale_image(a: np.ndarray, scale: float) -> np.ndarray:
    """An image resized by `scale` < 1 with area averaging."""
    import cv2

    if not 0 < scale <= 1:
        raise ValueError(f"a training set can only be downscaled (0 < scale <= 1), not by {scale}")
    if a.ndim == 4:
        return np.stack([downscale_image(t, scale) for t in a])
    h, w = a.shape[:2]
    return cv2.resize(a, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


class RandomCrops:
    """Batches of random crops with random horizontal flips, as uint8 (B, 3, s, s) arrays.
    With `by_area`, a single image is picked in proportion to its pixels (a large photo then
    gives as many crops as several small ones), else uniformly."""

    def __init__(self, images: list, crop: int, seed: int = 0, by_area: bool = False):
        self.stacked = [a for a in images if a.ndim == 4]
        self.single = [a for a in images if a.ndim == 3]
        self.n_stacked = sum(len(a) for a in self.stacked)
        self.crop, self.rng = crop, np.random.default_rng(seed)
        self.cum_area = None
        if by_area and self.single:
            if self.stacked:
                raise ValueError("area weighting is for single images, not stacked sets such as CIFAR-10")
            self.cum_area = np.cumsum([a.shape[0] * a.shape[1] for a in self.single])

    def _one(self):
        if self.cum_area is not None:
            r = int(np.searchsorted(self.cum_area, self.rng.integers(self.cum_area[-1]), side="right"))
        else:
            r = self.rng.integers(self.n_stacked + len(self.single))
        if r < self.n_stacked:
            for a in self.stacked:
                if r < len(a):
                    img = a[r]
                    break
                r -= len(a)
        else:
            img = self.single[r - self.n_stacked]
        s = self.crop
        h, w = img.shape[:2]
        if h < s or w < s:
            img = np.pad(img, ((0, max(0, s - h)), (0, max(0, s - w)), (0, 0)), mode="reflect")
            h, w = img.shape[:2]
        i, j = self.rng.integers(h - s + 1), self.rng.integers(w - s + 1)
        c = img[i : i + s, j : j + s]
        if self.rng.random() < 0.5:
            c = c[:, ::-1]
        return c.transpose(2, 0, 1)

    def batch(self, n: int) -> np.ndarray:
        return np.ascontiguousarray(np.stack([self._one() for _ in range(n)]))
