"""Test accuracy of the notebook's default recipe against the number of training images.

The notebook trains on 35,000 of the local copy's 40,000 training images and holds out 5,000 for validation (split
with the seed, as the notebook does). Here a run trains on the first --train-images of those 35,000, or, above
35,000, on all of them plus that many of the validation images, with the notebook's own `fit` and the default
recipe as `search_recipe.py` defines it (DEFAULT_RECIPE). It prints the accuracy on the held-out test split:
plain, image + mirror, and the notebook's 50 views. No recipe is chosen from these numbers; they show how much of
the gap to a result trained on all 50,000 CIFAR-10 images is data.

Usage: python benchmarks/data_size.py DATA_DIR [--train-images 35000 40000] [--seeds 0 1] [--epochs 68]
"""
import argparse
import contextlib
import os
import time

os.environ.setdefault("TQDM_DISABLE", "1")  # no progress bars from the runs

import torch
from common import NB, load_train_set, machine, pick_device
from search_recipe import BASE, RECIPES

DEFAULT_RECIPE = {**BASE, **RECIPES["68 epochs, weight decay 1e-3"]}


def train_and_test(train_images, test_data, n_images, seed, epochs):
    images, labels = train_images
    (train_x, train_y), (val_x, val_y) = NB.split_train_val(images, labels, 5000, 0, seed)
    train_x, train_y = torch.cat([train_x, val_x])[:n_images], torch.cat([train_y, val_y])[:n_images]
    normalize = NB.make_normalize(train_x)
    NB.seed_everything(seed)
    model = NB.ConvNet().to(images.device)
    r = DEFAULT_RECIPE
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=r["label_smoothing"])
    start = time.perf_counter()
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):  # the per-epoch validation is ignored
        NB.fit(model, (train_x, train_y), (val_x[:500], val_y[:500]), normalize, loss_fn, epochs, r["batch_size"],
               r["lr"], momentum=r["momentum"], cycle_momentum=r["cycle_momentum"], weight_decay=r["weight_decay"],
               max_shift=r["max_shift"])
    seconds = time.perf_counter() - start
    test_x, test_y = test_data
    views = {"plain": {}, "mirror": {"mirror": True}, "50 views": {"mirror": True, "shift": r["max_shift"]}}
    return seconds, {name: NB.accuracy(NB.tta_logits(model, test_x, normalize, **kw), test_y)
                     for name, kw in views.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir")
    parser.add_argument("--train-images", type=int, nargs="+", default=[35000, 40000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=DEFAULT_RECIPE["epochs"])
    args = parser.parse_args()
    device = pick_device()
    train_images = NB.dataset_tensors(load_train_set(args.data_dir), device)  # read once for every run
    test_data = NB.dataset_tensors(NB.load_cifar10(args.data_dir, download=False)[1], device)
    print(f"on {machine()}, torch {torch.__version__}, {args.epochs} epochs", flush=True)
    print(f"{'train images':>12} {'seed':>4} {'test':>7} {'mirror':>7} {'50 views':>9} {'seconds':>8}", flush=True)
    for n_images in args.train_images:
        for seed in args.seeds:
            seconds, acc = train_and_test(train_images, test_data, n_images, seed, args.epochs)
            print(f"{n_images:>12} {seed:>4} {acc['plain']:>7.2%} {acc['mirror']:>7.2%} {acc['50 views']:>9.2%} "
                  f"{seconds:>8.1f}", flush=True)


if __name__ == "__main__":
    main()
