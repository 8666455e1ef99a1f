"""Shared fixtures: a small CIFAR-10 written in the official on-disk layout, and the notebook's code."""
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torchvision.datasets.cifar as tv_cifar

os.environ.setdefault("MPLBACKEND", "Agg")  # tests draw figures without a screen
sys.path.insert(0, str(Path(__file__).resolve().parent))
from notebook_code import load_notebook

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
TRAIN_PER_BATCH, N_TEST = 200, 300

# Made-up files have made-up md5 sums: torchvision's integrity check must accept any existing file. The same
# line goes into an IPython startup file for the kernel that executes the whole notebook (see test_notebook.py).
OFFLINE_PATCH = ("import os, torchvision.datasets.cifar as c; "
                 "c.check_integrity = lambda path, md5=None: os.path.isfile(path)")


def make_images(labels, rng):
    """Noise plus a class-coloured 10x10 square at a class-specific place: learnable in a few epochs."""
    n = len(labels)
    images = rng.integers(0, 110, size=(n, 32, 32, 3)).astype(np.uint8)
    palette = np.array([[230, 40, 40], [40, 230, 40], [40, 40, 230], [230, 230, 40], [230, 40, 230],
                        [40, 230, 230], [250, 250, 250], [140, 70, 0], [0, 140, 70], [70, 0, 140]], dtype=np.uint8)
    for i, c in enumerate(labels):
        top, left = 4 + 7 * (c // 4), 4 + 6 * (c % 4)
        images[i, top:top + 10, left:left + 10] = palette[c]
    return images


def with_label_noise(labels, rng, fraction=0.2):
    """Relabel a random `fraction` at random, so that even a perfect model misclassifies some test images."""
    noisy = labels.copy()
    flip = rng.random(len(labels)) < fraction
    noisy[flip] = rng.integers(0, 10, flip.sum())
    return noisy


def write_batch(path, images, labels):
    data = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    with open(path, "wb") as f:
        pickle.dump({"data": data, "labels": [int(v) for v in labels]}, f)


@pytest.fixture(scope="session")
def tiny_cifar(tmp_path_factory):
    """A folder holding cifar-10-batches-py/ with 1,000 training and 300 test images of 10 classes, 20% of\n    them with a random label."""
    root = tmp_path_factory.mktemp("cifar")
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(1, 6):
        labels = rng.integers(0, 10, TRAIN_PER_BATCH)
        write_batch(folder / f"data_batch_{i}", make_images(labels, rng), with_label_noise(labels, rng))
    labels = rng.integers(0, 10, N_TEST)
    write_batch(folder / "test_batch", make_images(labels, rng), with_label_noise(labels, rng))
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": CLASSES}, f)
    return root


@pytest.fixture
def offline_cifar(monkeypatch):
    """Let torchvision accept the made-up files in this process."""
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda path, md5=None: os.path.isfile(path))


@pytest.fixture(scope="session")
def nb():
    """The notebook's functions and classes."""
    return load_notebook()
