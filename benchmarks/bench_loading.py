"""Loading CIFAR-10 from a folder: the notebook's load_cifar10 (torchvision's CIFAR10 with download=True, as it
ships) against reading each file once.

Both load the training and the test split from the same folder, side by side in one run. Besides the time, the
bytes the process read from files (`rchar` of /proc/self/io, Linux) count what a Google Drive mount would have to
fetch over the network: torchvision checks the md5 sum of every file twice per split before loading, the price of
the literal answer to Task 1.0. The folder's files are in the page cache after the first read, so the times here
are for a local disk at its best; through a network mount the bytes are what costs.

Usage: python benchmarks/bench_loading.py DATA_DIR [--repeats 3]
DATA_DIR holds cifar-10-batches-py/ (the folder the notebook downloads into, or a copy in the same layout).
"""
import argparse
import os
import pickle
import time
from pathlib import Path

import torchvision.datasets.cifar as tv_cifar
import torchvision.datasets.utils as tv_utils
from common import NB


def bytes_read():
    return int(dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())["rchar"])


def reading_check(path, md5=None):
    """torchvision's integrity check, which reads the whole file for its md5 sum as the real one does, but accepts
    the sum of a copy rebuilt in the official layout (whose files differ from the download)."""
    if not os.path.isfile(path):
        return False
    if md5 is not None:
        tv_utils.calculate_md5(path)
    return True


def each_file_once(root):
    """The pickled batches read once each, with no md5 sum: the least any loader must read."""
    folder = Path(root) / "cifar-10-batches-py"
    batches = [pickle.loads((folder / name).read_bytes(), encoding="latin1") for name in sorted(os.listdir(folder))
               if "_batch" in name]
    return [b for b in batches if "test" not in b["batch_label"]], [b for b in batches if "test" in b["batch_label"]]


def measure(load, root):
    start_bytes, start = bytes_read(), time.perf_counter()
    train_set, test_set = load(root)
    assert len(train_set) > 0 and len(test_set) > 0
    return time.perf_counter() - start, bytes_read() - start_bytes


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    tv_cifar.check_integrity = reading_check
    folder = Path(args.data_dir) / "cifar-10-batches-py"
    data_bytes = sum(f.stat().st_size for f in folder.iterdir())
    print(f"{folder}: {data_bytes / 1e6:.0f} MB in {len(os.listdir(folder))} files")
    print(f"{'way':<44} {'seconds (each run)':>26} {'MB read':>9} {'x data':>7}")
    for name, load in (("notebook load_cifar10 (torchvision, md5 checked)", NB.load_cifar10),
                       ("each file read once, no md5 sum", each_file_once)):
        runs = [measure(load, args.data_dir) for _ in range(args.repeats)]
        seconds = " ".join(f"{s:.2f}" for s, _ in runs)
        print(f"{name:<44} {seconds:>26} {runs[-1][1] / 1e6:>9.0f} {runs[-1][1] / data_bytes:>7.1f}")


if __name__ == "__main__":
    main()
