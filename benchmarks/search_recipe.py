"""Search the training recipe by validation accuracy; evaluate the test split for the two finalists only.

Every run is the notebook's own `fit` on the notebook's split (VAL_SIZE = 5000 held out of the training images,
split with the run's seed, as the notebook does with SEED), with one recipe's settings. Phase 1 trains each recipe
once (seed 0) and reports the final validation accuracy: plain, with the mirror image (2 views), and with the
notebook's test-time augmentation (every shift the recipe trains with, mirrored or not: "tta"). Phase 2
takes the two best recipes by plain validation accuracy among those that fit the CPU budget, trains each with the
seeds given, and only then evaluates the test split.

The budget: the notebook's default training must take at most --cpu-budget seconds on the project's 2-core
development machine (--cpu-epoch-seconds gives the seconds per epoch measured there for each batch size) and at
most --max-steps optimizer steps on Colab's 45,000 training images (what a training costs on a small GPU).

Runs go to --workers processes at once (on a GPU, a network this small leaves most of the card idle).

Usage: python benchmarks/search_recipe.py DATA_DIR [--workers 6] [--seeds 0 1] [--out results.jsonl]
"""
import argparse
import contextlib
import json
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context

os.environ.setdefault("TQDM_DISABLE", "1")  # no progress bars from the runs in the workers

import torch
from common import NB, load_train_set, machine, pick_device

BASE = {"epochs": 50, "batch_size": 256, "lr": 0.1, "momentum": 0.9, "cycle_momentum": False,
        "weight_decay": 5e-4, "label_smoothing": 0.1, "max_shift": 2}
RECIPES = {  # the longest first, so that they start first
    "200 epochs": {"epochs": 200},
    "100 epochs": {"epochs": 100},
    "batch 128, lr 0.05, 100 epochs": {"batch_size": 128, "lr": 0.05, "epochs": 100},
    "batch 128, lr 0.05": {"batch_size": 128, "lr": 0.05},
    "batch 128, lr 0.1": {"batch_size": 128, "lr": 0.1},
    "60 epochs": {"epochs": 60},
    "batch 512, lr 0.2, 60 epochs": {"batch_size": 512, "lr": 0.2, "epochs": 60},
    "batch 512, lr 0.1, 60 epochs": {"batch_size": 512, "lr": 0.1, "epochs": 60},
    "base (momentum 0.9 fixed)": {},
    "momentum cycled 0.95-0.85": {"cycle_momentum": True},
    "momentum 0.95": {"momentum": 0.95},
    "momentum 0.8": {"momentum": 0.8},
    "lr 0.05": {"lr": 0.05},
    "lr 0.2": {"lr": 0.2},
    "weight decay 1e-3": {"weight_decay": 1e-3},
    "weight decay 2.5e-4": {"weight_decay": 2.5e-4},
    "label smoothing 0": {"label_smoothing": 0.0},
    "label smoothing 0.05": {"label_smoothing": 0.05},
    "label smoothing 0.2": {"label_smoothing": 0.2},
    "shift 3 px": {"max_shift": 3},
    "60 epochs, lr 0.05": {"epochs": 60, "lr": 0.05},
    "60 epochs, shift 3 px": {"epochs": 60, "max_shift": 3},
    "60 epochs, label smoothing 0.2": {"epochs": 60, "label_smoothing": 0.2},
    "60 epochs, weight decay 2.5e-4": {"epochs": 60, "weight_decay": 2.5e-4},
    "60 epochs, weight decay 1e-3": {"epochs": 60, "weight_decay": 1e-3},
    "60 epochs, label smoothing 0": {"epochs": 60, "label_smoothing": 0.0},
    "batch 512, lr 0.2, 90 epochs": {"batch_size": 512, "lr": 0.2, "epochs": 90},
    "batch 128, lr 0.05, 34 epochs": {"batch_size": 128, "lr": 0.05, "epochs": 34},
    "60 epochs, shift 1 px": {"epochs": 60, "max_shift": 1},
    "60 epochs, weight decay 2e-3": {"epochs": 60, "weight_decay": 2e-3},
    "60 epochs, weight decay 4e-3": {"epochs": 60, "weight_decay": 4e-3},
    "68 epochs, weight decay 1e-3": {"epochs": 68, "weight_decay": 1e-3},
}

_DATA = {}


def data(data_dir, seed, device):
    key = (data_dir, seed)
    if key not in _DATA:
        images, labels = NB.dataset_tensors(load_train_set(data_dir), device)
        train, val = NB.split_train_val(images, labels, 5000, 0, seed)
        _DATA[key] = train, val, NB.make_normalize(train[0])
    return _DATA[key]


def train_and_measure(name, seed, data_dir, with_test, threads):
    torch.set_num_threads(threads)
    device = pick_device()
    (train, val, normalize), recipe = data(data_dir, seed, device), {**BASE, **RECIPES[name]}
    NB.seed_everything(seed)
    model = NB.ConvNet().to(device)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=recipe["label_smoothing"])
    start = time.perf_counter()
    fit_args = {k: v for k, v in recipe.items() if k not in ("epochs", "batch_size", "lr", "label_smoothing")}
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
        NB.fit(model, train, val, normalize, loss_fn, recipe["epochs"], recipe["batch_size"], recipe["lr"], **fit_args)
    row = {"recipe": name, "seed": seed, **recipe, "seconds": time.perf_counter() - start,
           "val": NB.accuracy(NB.predict_logits(model, val[0], normalize), val[1]),
           "val mirror": NB.accuracy(NB.tta_logits(model, val[0], normalize, mirror=True), val[1]),
           "val tta": NB.accuracy(NB.tta_logits(model, val[0], normalize, mirror=True,
                                                shift=recipe["max_shift"]), val[1])}
    if with_test:
        test_x, test_y = NB.dataset_tensors(NB.load_cifar10(data_dir, download=False)[1], device)
        row["test"] = NB.accuracy(NB.predict_logits(model, test_x, normalize), test_y)
        row["test mirror"] = NB.accuracy(NB.tta_logits(model, test_x, normalize, mirror=True), test_y)
        row["test tta"] = NB.accuracy(NB.tta_logits(model, test_x, normalize, mirror=True,
                                                    shift=recipe["max_shift"]), test_y)
    return row


def run_all(jobs, data_dir, workers, with_test, out):
    rows = []
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        threads = max(1, os.cpu_count() // workers)
        futures = [pool.submit(train_and_measure, name, seed, data_dir, with_test, threads) for name, seed in jobs]
        for future in as_completed(futures):
            row = future.result()
            rows.append(row)
            out.write(json.dumps(row) + "\n")
            out.flush()
            print(f"  {row['recipe']:<34} seed {row['seed']}: val {row['val']:.2%}, mirror {row['val mirror']:.2%}"
                  + (f", test {row['test']:.2%}, test mirror {row['test mirror']:.2%}, test tta {row['test tta']:.2%}"
                     if with_test else ""),
                  flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir")
    parser.add_argument("--workers", type=int, default=6)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="seeds for the two finalists")
    parser.add_argument("--cpu-budget", type=float, default=300.0)
    parser.add_argument("--cpu-epoch-seconds", nargs="+", default=["128=5.8", "256=3.65", "512=4.3"],
                        help="BATCH=SECONDS per epoch on the development CPU (256: the notebook's default run with "
                             "channels-last and the gather in augment; 128 and 512: earlier NCHW runs)")
    parser.add_argument("--max-steps", type=int, default=12000,
                        help="optimizer steps of the whole training on Colab's 45,000 training images")
    parser.add_argument("--recipes", nargs="+", metavar="RECIPE", help="phase 1 for these recipes only (default: all)")
    parser.add_argument("--finalists", nargs="+", metavar="RECIPE",
                        help="skip phase 1: these are the finalists (usually two; one adds seeds to a finalist)")
    parser.add_argument("--explore-only", action="store_true", help="phase 1 only: no finalists, no test split")
    parser.add_argument("--out", default="search_recipe.jsonl")
    args = parser.parse_args()
    per_epoch = {int(k): float(v) for k, v in (item.split("=") for item in args.cpu_epoch_seconds)}
    cpu_seconds = {name: per_epoch[r["batch_size"]] * r["epochs"] for name, r in
                   ((name, {**BASE, **overrides}) for name, overrides in RECIPES.items())}
    names = args.recipes or list(RECIPES)
    unknown = sorted(set(names + (args.finalists or [])) - set(RECIPES))
    if unknown:
        parser.error(f"unknown recipes {unknown}; the recipes are {list(RECIPES)}")
    print(f"on {machine()}, torch {torch.__version__}", flush=True)
    with open(args.out, "w") as out:
        explored = []
        if args.finalists:
            finalists = args.finalists
        else:
            print(f"phase 1: {len(names)} recipes, seed 0", flush=True)
            explored = run_all([(name, 0) for name in names], args.data_dir, args.workers, False, out)
            in_budget = [r for r in explored if cpu_seconds[r["recipe"]] <= args.cpu_budget
                         and r["epochs"] * math.ceil(45000 / r["batch_size"]) <= args.max_steps]
            best_first = [r["recipe"] for r in sorted(in_budget, key=lambda r: -r["val"])]
            finalists = [] if args.explore_only else best_first[:2]
        final = []
        if finalists:
            print(f"phase 2: finalists {finalists}, seeds {args.seeds}, with the test split", flush=True)
            final = run_all([(name, seed) for name in finalists for seed in args.seeds], args.data_dir, args.workers,
                            True, out)
    print(f"\n{'recipe':<34} {'CPU s (est.)':>12} {'val':>7} {'mirror':>7} {'tta':>7} {'s':>6}")
    for r in sorted(explored, key=lambda r: -r["val"]):
        print(f"{r['recipe']:<34} {cpu_seconds[r['recipe']]:>12.0f} {r['val']:>7.2%} {r['val mirror']:>7.2%} "
              f"{r['val tta']:>7.2%} {r['seconds']:>6.1f}")
    print(f"\n{'finalist':<34} {'seed':>4} {'val':>7} {'test':>7} {'test mirror':>12} {'test tta':>9}")
    for r in final:
        print(f"{r['recipe']:<34} {r['seed']:>4} {r['val']:>7.2%} {r['test']:>7.2%} {r['test mirror']:>12.2%} "
              f"{r['test tta']:>9.2%}")


if __name__ == "__main__":
    main()
