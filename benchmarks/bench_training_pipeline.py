"""Time per training epoch: the notebook's on-device pipeline against the usual DataLoader pipeline.

Both train the same ConvNet with the same optimizer, loss and batch size over the same CIFAR-10 training images,
side by side in one run, on the machine this runs on:

  * notebook: all images in one uint8 tensor on the device; each batch indexed out, augmented (random crop and
    flip) and normalized there (the notebook's `train_one_epoch`), in the usual layout (NCHW);
  * DataLoader: torchvision's CIFAR10 with transforms ToTensor and Normalize, through a torch DataLoader
    (shuffle=True), the way the PyTorch tutorial and most course solutions do it; it does no augmentation,
    so it does less work than the notebook's pipeline;
  * network alone: the same optimizer steps on batches prepared in advance; no pipeline can beat it, so it shows
    how much of an epoch is data handling at all.

Usage: python benchmarks/bench_training_pipeline.py DATA_DIR [--epochs 2] [--batch-size 256] [--workers 0 2]
DATA_DIR holds cifar-10-batches-py/ (the folder the notebook downloads into, or a copy in the same layout).
"""
import argparse
import statistics
import time

import torch
import torchvision.transforms as T
from common import (
    NB,
    load_train_set,
    machine,
    make_training,
    pick_device,
    synchronize,
)
from torch.utils.data import DataLoader


def timed(run, device):
    """A function that calls `run()` once and returns the seconds it took, queued CUDA work included."""
    def epoch():
        synchronize(device)
        start = time.perf_counter()
        run()
        synchronize(device)
        return time.perf_counter() - start

    return epoch


def plain_training(batches, device):
    """One epoch of plain training steps over the (x, y) pairs that `batches()` yields."""
    model, optimizer, _, loss_fn = make_training(device)

    def run():
        model.train()
        for x, y in batches():
            loss = loss_fn(model(x.to(device, non_blocking=True)), y.to(device, non_blocking=True))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    return timed(run, device)


def notebook_epoch(train_set, batch_size, device):
    images, labels = NB.dataset_tensors(train_set, device)
    normalize = NB.make_normalize(images)
    model, optimizer, scheduler, loss_fn = make_training(device)
    return timed(lambda: NB.train_one_epoch(model, images, labels, normalize, loss_fn, optimizer, scheduler,
                                            batch_size), device)


def network_alone_epoch(train_set, batch_size, device):
    """The floor for any pipeline: the same steps on batches normalized once in advance, in order, with no
    shuffling, augmentation or conversion."""
    images, labels = NB.dataset_tensors(train_set, device)
    batches = list(zip(NB.make_normalize(images)(images).split(batch_size), labels.split(batch_size)))
    return plain_training(lambda: batches, device)


def dataloader_epoch(train_set, batch_size, device, workers):
    standardize = NB.make_normalize(NB.dataset_tensors(train_set, torch.device("cpu"))[0]).transforms[1]
    train_set.transform = T.Compose([T.ToTensor(), T.Normalize(standardize.mean, standardize.std)])
    loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, num_workers=workers,
                        pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    return plain_training(lambda: loader, device)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per pipeline (the median is quoted)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader num_workers to try")
    args = parser.parse_args()
    device = pick_device()
    train_set = load_train_set(args.data_dir)
    print(f"{len(train_set):,} training images, batch {args.batch_size}, on {machine()}")
    ours = "notebook"
    pipelines = {ours: notebook_epoch(train_set, args.batch_size, device)}
    pipelines["network alone (floor), NCHW"] = network_alone_epoch(train_set, args.batch_size, device)
    for workers in args.workers:
        pipelines[f"DataLoader, {workers} workers"] = dataloader_epoch(
            load_train_set(args.data_dir), args.batch_size, device, workers)
    for epoch in pipelines.values():  # one warm-up epoch each
        epoch()
    times = {name: [] for name in pipelines}
    for _ in range(args.epochs):  # interleaved, so that a change in the machine's load hits every pipeline alike
        for name, epoch in pipelines.items():
            times[name].append(epoch())
    seconds = {name: statistics.median(values) for name, values in times.items()}
    print(f"{'pipeline':<30} {'s / epoch':>10} {'ratio to ' + ours:>32}")
    for name, value in seconds.items():
        print(f"{name:<30} {value:>10.2f} {value / seconds[ours]:>31.2f}x")


if __name__ == "__main__":
    main()
