"""MNIST and its out-of-distribution companions (NotMNIST, Fashion-MNIST) from IDX files.

Folder layout under the data folder (``--data-dir``, default ``../shared/data``)::

    mnist/          train-images-idx3-ubyte[.gz] (or the reconstruction train-images-idx3-ubyte-approx.gz),
                    train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]
    notmnist/       t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]
    fashion-mnist/  t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]

The official training images are preferred; the shared folder holds only a reconstruction within one grey
level of them (its README), which :class:`ImageSet` flags as ``approximate``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from deepens.data import idx, paths


@dataclasses.dataclass(frozen=True)
class ImageSet:
    """Images ``(N, H, W)`` uint8 and labels ``(N,)`` int32, with the files they came from."""

    images: np.ndarray
    labels: np.ndarray
    files: tuple[str, ...]
    approximate: bool = False

    def __len__(self) -> int:
        return len(self.labels)

    def features(self) -> np.ndarray:
        """Flattened pixels scaled to [0, 1], ``(N, H * W)`` float32 (the MLP's input)."""
        return self.images.reshape(len(self.images), -1).astype(np.float32) / 255.0

    def take(self, n: int | None) -> ImageSet:
        """The first ``n`` examples (all when None)."""
        if n is None or n >= len(self):
            return self
        return dataclasses.replace(self, images=self.images[:n], labels=self.labels[:n])


def _find(folder: Path, stems: tuple[str, ...]) -> Path:
    for stem in stems:
        for name in (stem + ".gz", stem):
            if (folder / name).is_file():
                return folder / name
    raise FileNotFoundError(f"none of {', '.join(s + '[.gz]' for s in stems)} in {folder}")


def _pair(folder: Path, images: tuple[str, ...], labels: str) -> ImageSet:
    image_path, label_path = _find(folder, images), _find(folder, (labels,))
    x, y = idx.read(image_path), idx.read(label_path)
    if x.ndim != 3 or x.dtype != np.uint8:
        raise ValueError(f"{image_path} must hold uint8 images (N, H, W), got {x.dtype} {x.shape}")
    if y.ndim != 1 or len(y) != len(x):
        raise ValueError(f"{label_path} holds {y.shape} labels for {len(x)} images in {image_path.name}")
    return ImageSet(x, y.astype(np.int32), (image_path.name, label_path.name), "approx" in image_path.name)


def load_mnist(data_dir: str | Path | None = None) -> tuple[ImageSet, ImageSet]:
    """MNIST ``(train, test)``."""
    folder = paths.resolve(data_dir, "mnist")
    train = _pair(folder, ("train-images-idx3-ubyte", "train-images-idx3-ubyte-approx"), "train-labels-idx1-ubyte")
    test = _pair(folder, ("t10k-images-idx3-ubyte",), "t10k-labels-idx1-ubyte")
    return train, test


def load_test_set(name: str, data_dir: str | Path | None = None) -> ImageSet:
    """The test set of ``notmnist`` or ``fashion-mnist`` (or ``mnist``)."""
    folder = paths.resolve(data_dir, name)
    return _pair(folder, ("t10k-images-idx3-ubyte",), "t10k-labels-idx1-ubyte")
