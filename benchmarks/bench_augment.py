"""Time the notebook's `augment` (one `gather` over the flattened padded images) against the same augmentation
written as advanced indexing by row and column (the notebook's earlier version), side by side in one run.

Both draw the same random numbers in the same order, so with the same seed they must return the same images; the
script checks that before it times anything. The ratio is the figure to quote (this machine is shared and noisy).

Usage: python benchmarks/bench_augment.py [--batch-size 256] [--repeats 200] [--threads 2]
"""
import argparse

import torch
import torch.nn.functional as F
from common import NB, machine, pick_device
from torch.utils import benchmark


def augment_by_indexing(images, padding=NB.MAX_SHIFT):
    # The earlier version: the same draws, then padded[image, channel, row, column] with four broadcast indices.
    n, c, h, w = images.shape
    padded = F.pad(images, (padding,) * 4)
    dev = images.device
    top, left = torch.randint(0, 2 * padding + 1, (2, n, 1, 1), device=dev)
    flip = torch.rand(n, 1, 1, device=dev) < 0.5
    cols = torch.arange(w, device=dev)
    rows = top + torch.arange(h, device=dev).view(1, h, 1)
    cols = left + torch.where(flip, w - 1 - cols, cols).view(n, 1, w)
    return padded[torch.arange(n, device=dev).view(n, 1, 1, 1), torch.arange(c, device=dev).view(1, c, 1, 1),
                  rows.unsqueeze(1), cols.unsqueeze(1)]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = pick_device()
    images = torch.randint(0, 256, (args.batch_size, 3, 32, 32), dtype=torch.uint8, device=device)
    torch.manual_seed(0)
    ours = NB.augment(images, NB.MAX_SHIFT)
    torch.manual_seed(0)
    if not torch.equal(ours, augment_by_indexing(images)):
        raise SystemExit("the two versions differ for the same random draws")
    print(f"batch of {args.batch_size} uint8 images (3x32x32), shifts up to {NB.MAX_SHIFT} px, on {machine()}")
    results = {}
    for name, fn in (("gather (notebook)", lambda x: NB.augment(x, NB.MAX_SHIFT)),
                     ("indexing by row and column", augment_by_indexing)):
        timer = benchmark.Timer("fn(images)", globals={"fn": fn, "images": images}, num_threads=args.threads)
        results[name] = timer.timeit(args.repeats).median
    for name, seconds in results.items():
        print(f"{name:<28} {seconds * 1e3:8.2f} ms  {seconds / results['gather (notebook)']:5.2f}x")


if __name__ == "__main__":
    main()
