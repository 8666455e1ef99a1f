"""What both benchmarks share: the notebook's code, and CIFAR-10 from a folder (or made-up images of its shape)."""
import os
import sys
from pathlib import Path

import torch
import torchvision.datasets.cifar as tv_cifar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from notebook_code import load_notebook

NB = load_notebook()


def load_train_set(data_dir):
    """torchvision's CIFAR10 training split from `data_dir`. The md5 check is switched off here, in the harness,
    so that a copy of CIFAR-10 rebuilt in the official layout (whose files differ from the download) is accepted."""
    tv_cifar.check_integrity = lambda path, md5=None: os.path.isfile(path)
    train_set, _ = NB.load_cifar10(data_dir, download=False)
    return train_set


def machine():
    return NB.device_description(NB.pick_device("auto"))


def median_seconds(fn, repeats):
    times = []
    for _ in range(repeats):
        times.append(fn())
    return sorted(times)[len(times) // 2]


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
