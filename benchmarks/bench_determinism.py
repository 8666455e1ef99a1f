"""What determinism costs: training epochs with the notebook's settings against PyTorch's fast defaults.

The notebook's `seed_everything` asks for deterministic algorithms (cuDNN's deterministic convolutions and
torch.use_deterministic_algorithms). This script trains the same network from the same seed twice in each mode,
side by side in one run, and reports the seconds per epoch and whether the two runs gave bit-identical losses.
On a GPU the fast mode (cudnn.benchmark, no determinism) may pick other kernels, whose sums in another order can
make two runs differ; on a CPU both modes are usually identical.

Usage: python benchmarks/bench_determinism.py DATA_DIR [--epochs 3] [--batch-size 256]
"""
import argparse
import time

import torch
from common import NB, load_train_set, machine, make_training, pick_device, synchronize


def train(data, device, epochs, batch_size, deterministic):
    train_x, train_y, normalize = data
    NB.seed_everything(0)
    if not deterministic:  # PyTorch's defaults, plus the autotuner
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
        torch.backends.cudnn.benchmark = True
    model, optimizer, scheduler, loss_fn = make_training(device)
    losses, seconds = [], []
    for _ in range(epochs):
        synchronize(device)
        start = time.perf_counter()
        losses.append(NB.train_one_epoch(model, train_x, train_y, normalize, loss_fn, optimizer, scheduler,
                                         batch_size)[0])
        synchronize(device)
        seconds.append(time.perf_counter() - start)
    return losses, sorted(seconds)[len(seconds) // 2]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    device = pick_device()
    images, labels = NB.dataset_tensors(load_train_set(args.data_dir), device)
    data = (images, labels, NB.make_normalize(images))
    print(f"{len(labels):,} training images, batch {args.batch_size}, {args.epochs} epochs per run, on {machine()}")
    print(f"{'mode':<36} {'s / epoch (median)':>19} {'two runs identical':>19}")
    for name, deterministic in (("notebook (deterministic)", True), ("fast defaults (cudnn.benchmark)", False)):
        (first, seconds), (second, _) = (train(data, device, args.epochs, args.batch_size, deterministic)
                                         for _ in range(2))
        print(f"{name:<36} {seconds:>19.3f} {first == second!s:>19}")
    NB.seed_everything(0)  # back to the notebook's settings


if __name__ == "__main__":
    main()
