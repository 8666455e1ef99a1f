"""Forward time of the networks built from own layers over the default one, whole network and per conv layer.

Side by side in one run, on the machine this runs on (CUDA when there is a GPU), with the notebook's own
`forward_ms` (torch.utils.benchmark: warm-up, CUDA synchronization, median of many runs):
ConvNet() against ConvNet(myConv2dFast, myLinear) and ConvNet(myConv2d, myLinear), and nn.Conv2d against
myConv2dFast and myConv2d for each of the two conv layers with the inputs they see in the network.
The weights are random (speed does not depend on them) and the same in all three networks.

Usage: python benchmarks/bench_own_layers.py [--batch-size 256] [--seconds 2]
"""
import argparse

import torch
from common import NB, machine


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=2.0, help="minimum measuring time per entry")
    args = parser.parse_args()
    device = NB.pick_device("auto")
    torch.manual_seed(0)
    default = NB.ConvNet().to(device).eval()
    networks = {"default": default}
    for name, conv in (("im2col (myConv2dFast)", NB.myConv2dFast), ("Eq. 4 loop (myConv2d)", NB.myConv2d)):
        networks[name] = NB.ConvNet(conv, NB.myLinear).to(device).eval()
        networks[name].load_state_dict(default.state_dict())
    x = torch.randn(args.batch_size, 3, 32, 32, device=device)
    with torch.no_grad():
        layer_inputs = {"conv1": x, "conv2": default.pool1(default.relu1(default.conv1(x)))}
    rows = {"whole network": {name: NB.forward_ms(net, x, args.seconds) for name, net in networks.items()}}
    for layer, layer_x in layer_inputs.items():
        rows[layer] = {name: NB.forward_ms(net.get_submodule(layer), layer_x, args.seconds)
                       for name, net in networks.items()}
    print(f"forward pass at batch {args.batch_size}, median ms, on {machine()}, torch {torch.__version__}")
    names = list(networks)
    print(f"{'':<15}" + "".join(f"{n:>24}" for n in names) + "".join(f"{'ratio ' + n.split(' (')[0]:>20}" for n in names[1:]))
    for what, times in rows.items():
        print(f"{what:<15}" + "".join(f"{times[n]:>24.2f}" for n in names)
              + "".join(f"{times[n] / times['default']:>19.1f}x" for n in names[1:]))


if __name__ == "__main__":
    main()
