"""myLinear, myConv2d and myConv2dFast from the notebook against nn.Linear and nn.Conv2d: outputs, gradients, errors."""
import itertools
import random

import pytest
import torch
from torch import nn

OWN_CONVS = ("myConv2d", "myConv2dFast")


def relative_error(own, reference):
    return ((own - reference).abs().max() / reference.abs().max()).item()


def conv_cases():
    """A fixed random sample of (kernel, stride, padding, batch, height, width) covering every kernel 1-7,
    stride 1-3 and padding 0-3, plus the edge cases: a batch of 1, non-square images, a kernel as large as
    the padded input."""
    rng = random.Random(0)
    grid = [(k, s, p) for k, s, p in itertools.product(range(1, 8), range(1, 4), range(4))]
    cases = []
    for k, s, p in rng.sample(grid, 24):
        h = rng.randint(max(1, k - 2 * p), 11)
        w = rng.randint(max(1, k - 2 * p), 11)
        cases.append((k, s, p, rng.choice([1, 3]), h, w))
    cases += [(k, 1, 0, 1, k, k) for k in (1, 5, 7)]  # kernel exactly the size of the input
    cases += [(3, 2, 1, 2, 5, 9), (5, 3, 2, 1, 13, 6), (7, 1, 3, 2, 7, 7)]
    assert {c[0] for c in cases} == set(range(1, 8)) and {c[1] for c in cases} == {1, 2, 3}
    assert {c[2] for c in cases} == {0, 1, 2, 3}
    return cases


def check_against(reference, own, x, tolerance):
    """Same parameters, same input, same output gradient: outputs and all gradients within `tolerance`."""
    own.load_state_dict(reference.state_dict())
    x_ref, x_own = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_ref, out_own = reference(x_ref), own(x_own)
    assert out_own.shape == out_ref.shape
    grad = torch.randn_like(out_ref)
    out_ref.backward(grad)
    out_own.backward(grad)
    assert relative_error(out_own, out_ref) < tolerance
    assert relative_error(x_own.grad, x_ref.grad) < tolerance
    for name, param in reference.named_parameters():
        assert relative_error(own.get_parameter(name).grad, param.grad) < tolerance, name


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
@pytest.mark.parametrize("conv_name", OWN_CONVS)
def test_conv_matches_pytorch(nb, conv_name, dtype, tolerance):
    torch.manual_seed(0)
    for k, s, p, batch, h, w in conv_cases():
        c_in, c_out = random.Random(k * 100 + h).randint(1, 4), 3
        reference = nn.Conv2d(c_in, c_out, k, stride=s, padding=p).to(dtype)
        own = getattr(nb, conv_name)(c_in, c_out, k, stride=s, padding=p).to(dtype)
        check_against(reference, own, torch.randn(batch, c_in, h, w, dtype=dtype), tolerance)


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_linear_matches_pytorch(nb, dtype, tolerance):
    torch.manual_seed(0)
    for shape, c_in, c_out in [((1, 8), 8, 16), ((32, 400), 400, 128), ((2, 5, 7), 7, 3), ((7,), 7, 1)]:
        check_against(nn.Linear(c_in, c_out).to(dtype), nb.myLinear(c_in, c_out).to(dtype),
                      torch.randn(*shape, dtype=dtype), tolerance)


@pytest.mark.parametrize("conv_name", OWN_CONVS)
def test_conv_gradcheck(nb, conv_name):
    torch.manual_seed(0)
    conv = getattr(nb, conv_name)(2, 3, 3, stride=2, padding=1).double()
    assert torch.autograd.gradcheck(conv, (torch.randn(2, 2, 5, 4, dtype=torch.float64, requires_grad=True),))


def test_linear_gradcheck(nb):
    torch.manual_seed(0)
    layer = nb.myLinear(4, 3).double()
    assert torch.autograd.gradcheck(layer, (torch.randn(2, 4, dtype=torch.float64, requires_grad=True),))


def test_initialization_matches_pytorch(nb):
    """Same seed, same shapes: the own layers draw the very numbers nn.Linear and nn.Conv2d draw."""
    for make_own, make_ref in ((lambda: nb.myLinear(400, 128), lambda: nn.Linear(400, 128)),
                               (lambda: nb.myConv2d(8, 16, 5), lambda: nn.Conv2d(8, 16, 5)),
                               (lambda: nb.myConv2dFast(3, 8, 5), lambda: nn.Conv2d(3, 8, 5))):
        torch.manual_seed(0)
        own = make_own()
        torch.manual_seed(0)
        ref = make_ref()
        for name, param in ref.named_parameters():
            assert isinstance(own.get_parameter(name), nn.Parameter)
            assert torch.allclose(own.get_parameter(name), param, rtol=0, atol=1e-7), name


def test_own_layers_have_pytorch_state_dict_layout(nb):
    assert nb.myConv2d(3, 8, 5).state_dict().keys() == nn.Conv2d(3, 8, 5).state_dict().keys()
    for key, value in nn.Conv2d(3, 8, 5).state_dict().items():
        assert nb.myConv2dFast(3, 8, 5).state_dict()[key].shape == value.shape
    for key, value in nn.Linear(8, 16).state_dict().items():
        assert nb.myLinear(8, 16).state_dict()[key].shape == value.shape


@pytest.mark.parametrize("conv_name", OWN_CONVS)
@pytest.mark.parametrize("shape, message", [
    ((3, 32, 32), "expected a 4-D input"),
    ((1, 1, 3, 32, 32), "expected a 4-D input"),
    ((2, 4, 32, 32), "expected 3 input channels, got 4"),
    ((2, 3, 4, 32), "kernel size 5 is larger than the padded input 4x32"),
])
def test_conv_rejects_bad_input(nb, conv_name, shape, message):
    with pytest.raises(ValueError, match=message):
        getattr(nb, conv_name)(3, 8, 5)(torch.zeros(shape))


def test_linear_rejects_bad_input(nb):
    with pytest.raises(ValueError, match=r"last dimension is in_features = 8, got shape \(2, 7\)"):
        nb.myLinear(8, 16)(torch.zeros(2, 7))
    with pytest.raises(ValueError, match="in_features = 8"):
        nb.myLinear(8, 16)(torch.tensor(1.0))


@pytest.mark.parametrize("make", [
    lambda nb: nb.myLinear(0, 16), lambda nb: nb.myLinear(8, -1), lambda nb: nb.myLinear(8.0, 16),
    lambda nb: nb.myConv2d(0, 8, 5), lambda nb: nb.myConv2d(3, 8, 0), lambda nb: nb.myConv2d(3, 8, 5, stride=0),
    lambda nb: nb.myConv2dFast(3, 8, 5, padding=-1), lambda nb: nb.myConv2d(3, 8, True),
])
def test_constructors_reject_non_positive_sizes(nb, make):
    with pytest.raises(ValueError, match="must be a"):
        make(nb)


@pytest.mark.parametrize("conv_name", OWN_CONVS)
def test_state_dict_round_trip_with_default_network(nb, conv_name):
    torch.manual_seed(0)
    default = nb.ConvNet()
    own = nb.ConvNet(getattr(nb, conv_name), nb.myLinear)
    assert own.state_dict().keys() == default.state_dict().keys()
    own.load_state_dict(default.state_dict())
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert relative_error(own(x), default(x)) < 1e-5
    back = nb.ConvNet()
    back.load_state_dict(own.state_dict())
    for key, value in default.state_dict().items():
        assert torch.equal(back.state_dict()[key], value)
