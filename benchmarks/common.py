"""What the benchmarks share: the notebook's code, CIFAR-10 from a folder, one training setup, a CUDA sync."""
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


def make_training(device, lr=0.05):
    """A fresh ConvNet (seed 0) on `device` with the notebook's optimizer and loss, at a constant learning rate."""
    torch.manual_seed(0)
    model = NB.ConvNet().to(device)
    optimizer = NB.make_optimizer(model, lr)
    scheduler = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0)
    return model, optimizer, scheduler, torch.nn.CrossEntropyLoss(label_smoothing=0.1)


def pick_device():
    """The GPU where PyTorch sees one, else the CPU: as the notebook's DEVICE = "auto"."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def machine():
    return NB.device_description(pick_device())


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
