"""Validation accuracy of trained weights under several sets of test-time views, to choose the notebook's.

Each set averages the logits over its shifts of the image (zero border, as in training), each also mirrored.
The validation split is the notebook's (VAL_SIZE = 5000, split with --seed as the notebook does with SEED); the
weights should come from a run with that seed, so that none of these images was trained on.

Usage: python benchmarks/compare_tta_views.py DATA_DIR WEIGHTS [--seed 0]
WEIGHTS: a state dict saved by the notebook (outputs/convnet_cifar10.pt, or the one in DRIVE_FOLDER).
"""
import argparse

import torch
from common import NB, load_train_set, machine, pick_device

PLUS = ((1, 0), (-1, 0), (0, 1), (0, -1))
VIEW_SETS = {
    "image only": [(0, 0)],
    "4 shifts of 1 px": [(0, 0), *PLUS],
    "4 shifts of 2 px": [(0, 0), *((2 * dy, 2 * dx) for dy, dx in PLUS)],
    "4 shifts of 3 px": [(0, 0), *((3 * dy, 3 * dx) for dy, dx in PLUS)],
    "4 diagonal shifts of 2 px": [(0, 0), (2, 2), (2, -2), (-2, 2), (-2, -2)],
    "3x3 grid, 1 px apart": [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)],
    "3x3 grid, 2 px apart": [(dy, dx) for dy in (-2, 0, 2) for dx in (-2, 0, 2)],
    "every shift up to 2 px (the notebook's)": [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)],
}


@torch.no_grad()
def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir")
    parser.add_argument("weights")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    device = pick_device()
    images, labels = NB.dataset_tensors(load_train_set(args.data_dir), device)
    train, (val_x, val_y) = NB.split_train_val(images, labels, 5000, 0, args.seed)
    normalize = NB.make_normalize(train[0])
    model = NB.ConvNet().to(device).eval()
    model.load_state_dict(torch.load(args.weights, map_location=device, weights_only=True))
    cache = {}

    def view_logits(dy, dx, mirror):
        if (dy, dx, mirror) not in cache:
            view = NB.shifted(val_x, dy, dx)
            cache[dy, dx, mirror] = NB.predict_logits(model, view.flip(-1) if mirror else view, normalize)
        return cache[dy, dx, mirror]

    print(f"{len(val_y):,} validation images (seed {args.seed}), on {machine()}")
    print(f"{'positions':<42} {'count':>5} {'without mirror':>15} {'with mirror (twice the views)':>30}")
    for name, moves in VIEW_SETS.items():
        plain = sum(view_logits(dy, dx, False) for dy, dx in moves) / len(moves)
        mirrored = (plain + sum(view_logits(dy, dx, True) for dy, dx in moves) / len(moves)) / 2
        print(f"{name:<42} {len(moves):>5} {NB.accuracy(plain, val_y):>15.2%} {NB.accuracy(mirrored, val_y):>30.2%}")


if __name__ == "__main__":
    main()
