"""Forward time of the networks built from own layers over the default one, whole network and per conv layer.

Side by side in one run, on the machine this runs on (CUDA when there is a GPU), with the notebook's own
`forward_times_ms` (torch.utils.benchmark: warm-up, CUDA synchronization, blocks of runs until --seconds):
ConvNet() against ConvNet(myConv2dFast, myLinear) and ConvNet(myConv2d, myLinear), and nn.Conv2d against
myConv2dFast and myConv2d for each of the two conv layers with the inputs they see in the network. The weights
are random (speed does not depend on them) and the same in all three networks. The whole measurement is repeated
--runs times, so that the spread between runs shows next to the spread within one.

Usage: python benchmarks/bench_own_layers.py [--batch-size 256] [--seconds 1] [--runs 3]
"""
import argparse

import torch
from common import NB, machine, pick_device


def measure(networks, inputs, seconds):
    """{row: {network: per-block times in ms}} for the whole networks and each conv layer alone."""
    rows = {"whole network": {name: NB.forward_times_ms(net, inputs["whole network"], seconds)
                              for name, net in networks.items()}}
    for layer in ("conv1", "conv2"):
        rows[layer] = {name: NB.forward_times_ms(net.get_submodule(layer), inputs[layer], seconds)
                       for name, net in networks.items()}
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=1.0, help="minimum measuring time per entry")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    device = pick_device()
    torch.manual_seed(0)
    default = NB.ConvNet().to(device).eval()
    networks = {"default": default}
    for name, conv in (("im2col (myConv2dFast)", NB.myConv2dFast), ("Eq. 4 loop (myConv2d)", NB.myConv2d)):
        networks[name] = NB.ConvNet(conv, NB.myLinear).to(device).eval()
        networks[name].load_state_dict(default.state_dict())
    x = torch.randn(args.batch_size, 3, 32, 32, device=device)
    with torch.no_grad():
        inputs = {"whole network": x, "conv1": x, "conv2": default.pool1(default.relu1(default.conv1(x)))}
    print(f"forward pass at batch {args.batch_size}, mean ± std over the blocks of one run, in ms, on {machine()}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    names = list(networks)
    print(f"{'run':<4}{'':<15}" + "".join(f"{n:>26}" for n in names)
          + "".join(f"{'ratio ' + n.split(' (')[0]:>18}" for n in names[1:]))
    for run in range(1, args.runs + 1):
        for what, times in measure(networks, inputs, args.seconds).items():
            print(f"{run:<4}{what:<15}" + "".join(f"{times[n].mean():>17.2f} ± {times[n].std():>6.2f}" for n in names)
                  + "".join(f"{times[n].mean() / times['default'].mean():>17.2f}x" for n in names[1:]))


if __name__ == "__main__":
    main()
