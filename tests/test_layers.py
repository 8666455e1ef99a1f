"""myLinear, myConv2d and myConv2dFast from the notebook against nn.Linear and nn.Conv2d: outputs, gradients, errors."""
import itertools
import random
import re

import numpy as np
import pytest
import torch
from torch import nn

OWN_CONVS = ("myConv2d", "myConv2dFast")


def relative_error(own, reference):
    """max |own - reference| / max |reference|; the absolute error where the reference is all zero (a stride can
    skip every pixel of the input that is not padding)."""
    scale = reference.abs().max()
    return ((own - reference).abs().max() / (scale if scale > 0 else 1)).item()


def conv_cases():
    """A fixed random sample of (kernel, stride, padding, bias, batch, height, width) covering every kernel 1-7,
    stride 1-3 and padding 0-3, as ints and as (height, width) pairs with different values, square, non-square and
    even kernels, with and without bias, plus the edge cases: a batch of 1, non-square images, a kernel as large
    as the padded input."""
    rng = random.Random(0)
    grid = [(k, s, p) for k, s, p in itertools.product(range(1, 8), range(1, 4), range(4))]
    cases = []
    for i, (k, s, p) in enumerate(rng.sample(grid, 24)):
        if i % 2:  # every other case with a different value per axis
            k, s, p = (k, rng.randint(1, 7)), (s, rng.randint(1, 3)), (p, rng.randint(0, 3))
        kh, kw = k if isinstance(k, tuple) else (k, k)
        ph, pw = p if isinstance(p, tuple) else (p, p)
        h = rng.randint(max(1, kh - 2 * ph), 11)
        w = rng.randint(max(1, kw - 2 * pw), 11)
        cases.append((k, s, p, i % 3 != 0, rng.choice([1, 3]), h, w))
    cases += [(k, 1, 0, True, 1, k, k) for k in (1, 5, 7)]  # kernel exactly the size of the input
    cases += [(3, 2, 1, True, 2, 5, 9), (5, 3, 2, False, 1, 13, 6), (7, 1, 3, True, 2, 7, 7),
              ((3, 5), (2, 1), (1, 2), False, 2, 6, 9), (2, 1, 1, True, 1, 6, 6), ((4, 2), 2, (2, 0), True, 2, 8, 5)]
    kernels = {k if isinstance(k, tuple) else (k, k) for k, *_ in cases}
    assert {k for pair in kernels for k in pair} == set(range(1, 8))
    assert any(kh != kw for kh, kw in kernels) and any(kh % 2 == 0 and kh == kw for kh, kw in kernels)
    assert any(isinstance(s, tuple) and s[0] != s[1] for _, s, *_ in cases)
    assert any(isinstance(p, tuple) and p[0] != p[1] for _, _, p, *_ in cases)
    assert {bias for *_, bias, _, _, _ in cases} == {True, False}
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
    for k, s, p, bias, batch, h, w in conv_cases():
        c_in, c_out = random.Random(str((k, h))).randint(1, 4), 3
        reference = nn.Conv2d(c_in, c_out, k, stride=s, padding=p, bias=bias).to(dtype)
        own = getattr(nb, conv_name)(c_in, c_out, k, stride=s, padding=p, bias=bias).to(dtype)
        assert [name for name, _ in own.named_parameters()] == [name for name, _ in reference.named_parameters()]
        check_against(reference, own, torch.randn(batch, c_in, h, w, dtype=dtype), tolerance)


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_linear_matches_pytorch(nb, dtype, tolerance):
    torch.manual_seed(0)
    for shape, c_in, c_out, bias in [((1, 8), 8, 16, True), ((32, 400), 400, 128, True), ((2, 5, 7), 7, 3, False),
                                     ((7,), 7, 1, True), ((4, 9), 9, 5, False)]:
        check_against(nn.Linear(c_in, c_out, bias=bias).to(dtype), nb.myLinear(c_in, c_out, bias=bias).to(dtype),
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
@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 1, 3, 32, 32), (2, 4, 32, 32), (2, 3, 4, 32), (8,)])
def test_conv_rejects_bad_input_with_what_it_expected(nb, conv_name, shape):
    with pytest.raises(ValueError, match=rf"{conv_name} expected \(batch, 3 channels, height, width\), the image at least "
                                         rf"\(5, 5\) with padding \(0, 0\); got {re.escape(str(shape))}"):
        getattr(nb, conv_name)(3, 8, 5)(torch.zeros(shape))


@pytest.mark.parametrize("conv_name", OWN_CONVS)
def test_padding_makes_a_small_input_large_enough(nb, conv_name):
    assert getattr(nb, conv_name)(3, 8, 5, padding=1)(torch.zeros(2, 3, 3, 3)).shape == (2, 8, 1, 1)


def test_linear_rejects_bad_input(nb):
    with pytest.raises(ValueError, match=r"last dimension is in_features = 8, got shape \(2, 7\)"):
        nb.myLinear(8, 16)(torch.zeros(2, 7))
    with pytest.raises(ValueError, match="in_features = 8"):
        nb.myLinear(8, 16)(torch.tensor(1.0))


@pytest.mark.parametrize("make, message", [
    (lambda nb: nb.myLinear(0, 16), "in_features must be an integer >= 1, got 0"),
    (lambda nb: nb.myLinear(8, -1), "out_features must be an integer >= 1, got -1"),
    (lambda nb: nb.myLinear(8.0, 16), "in_features must be an integer >= 1, got 8.0"),
    (lambda nb: nb.myLinear(True, 16), "in_features must be an integer >= 1, got True"),
    (lambda nb: nb.myConv2d(0, 8, 5), "in_channels must be an integer >= 1, got 0"),
    (lambda nb: nb.myConv2dFast(3, np.int64(0), 5), "out_channels must be an integer >= 1, got np.int64\\(0\\)"),
    (lambda nb: nb.myConv2d(3, 8, 0), r"kernel_size must be an integer >= 1, got 0"),
    (lambda nb: nb.myConv2d(3, 8, True), "kernel_size must be an integer >= 1, got True"),
    (lambda nb: nb.myConv2d(3, 8, 5.0), "kernel_size must be an integer >= 1, got 5.0"),
    (lambda nb: nb.myConv2d(3, 8, (3, 0)), r"kernel_size must be an integer >= 1, got 0"),
    (lambda nb: nb.myConv2d(3, 8, (3, 3, 3)), (r"kernel_size must be an integer or a pair \(height, width\) of "
                                               r"integers, got \(3, 3, 3\)")),
    (lambda nb: nb.myConv2d(3, 8, 5, stride=0), "stride must be an integer >= 1, got 0"),
    (lambda nb: nb.myConv2d(3, 8, 5, stride=(1,)), r"stride must be .*got \(1,\)"),
    (lambda nb: nb.myConv2dFast(3, 8, 5, padding=-1), "padding must be an integer >= 0, got -1"),
    (lambda nb: nb.myConv2dFast(3, 8, 5, padding=(1, 1.5)), r"padding must be an integer >= 0, got 1.5"),
    (lambda nb: nb.myConv2dFast(3, 8, 5, padding="same"), "padding must be an integer >= 0, got 'same'"),
])
def test_constructors_reject_bad_arguments(nb, make, message):
    with pytest.raises(ValueError, match=message):
        make(nb)


@pytest.mark.parametrize("conv_name", OWN_CONVS)
def test_pytorch_signature_and_bias_false(nb, conv_name):
    conv = getattr(nb, conv_name)(3, 8, (3, 5), stride=(2, 1), padding=(1, 2), bias=False)
    assert conv.kernel_size == (3, 5) and conv.stride == (2, 1) and conv.padding == (1, 2)
    assert conv.bias is None and "bias" not in conv.state_dict()
    assert conv(torch.randn(2, 3, 9, 9)).shape == nn.Conv2d(3, 8, (3, 5), (2, 1), (1, 2))(torch.randn(2, 3, 9, 9)).shape
    assert nb.myLinear(4, 2, bias=False).bias is None


@pytest.mark.parametrize("conv_name", OWN_CONVS)
def test_state_dict_round_trip_without_bias_both_ways(nb, conv_name):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 7)
    for make_own, make_ref, inputs in (
            (lambda: getattr(nb, conv_name)(3, 4, (2, 3), stride=(1, 2), bias=False),
             lambda: nn.Conv2d(3, 4, (2, 3), stride=(1, 2), bias=False), x),
            (lambda: nb.myLinear(7, 3, bias=False), lambda: nn.Linear(7, 3, bias=False), x)):
        own, ref = make_own(), make_ref()
        own.load_state_dict(ref.state_dict())  # PyTorch's into ours
        assert torch.allclose(own(inputs), ref(inputs), atol=1e-6)
        ref2 = make_ref()
        ref2.load_state_dict(own.state_dict())  # and ours into PyTorch's
        assert torch.equal(ref2.weight, ref.weight)
        with pytest.raises(RuntimeError, match="Unexpected key.*bias"):
            own.load_state_dict({**ref.state_dict(), "bias": torch.zeros(ref.weight.shape[0])})


def test_fast_conv_chunks_on_the_cpu_and_matches_one_chunk(nb):
    """The batch is cut so that a chunk's column matrix stays under COLUMN_BYTES; the result does not change."""
    torch.manual_seed(0)
    conv = nb.myConv2dFast(3, 8, 5)
    x = torch.randn(40, 3, 32, 32)
    one_chunk = conv(x)
    conv.COLUMN_BYTES = 28 * 28 * 75 * 4 * 3  # three images' columns per chunk: 14 chunks for 40 images
    assert torch.allclose(conv(x), one_chunk, atol=1e-6)
    conv.COLUMN_BYTES = 1  # never below one image per chunk
    assert torch.allclose(conv(x[:3]), one_chunk[:3], atol=1e-6)


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


def test_mylinear_takes_the_device_third_as_the_starter_code_does(nb):
    """The starter code's myLinear(in_features, out_features, device=None): a device given third places the
    parameters there; `bias`, which nn.Linear takes third, goes by name."""
    layer = nb.myLinear(8, 16, "cpu")
    assert layer.weight.device.type == layer.bias.device.type == "cpu"
    with pytest.raises(TypeError):
        nb.myLinear(8, 16, "cpu", False)  # bias by name only


@pytest.mark.parametrize("make", [lambda nb: nb.myConv2d(3, 8, 5, 1, 0, "cuda"),
                                  lambda nb: nb.myConv2dFast(3, 8, 5, 1, 0, "cpu"),
                                  lambda nb: nb.myLinear(8, 16, bias="cuda"), lambda nb: nb.myConv2d(3, 8, 5, bias=1)])
def test_a_bias_that_is_not_a_bool_is_a_device_in_the_wrong_place(nb, make):
    """nn.Conv2d's sixth argument is its dilation, ours is the bias: a device there must not pass as bias=True and
    leave the weights on the CPU. Every own layer names device= in its error."""
    with pytest.raises(TypeError, match=r"bias must be True or False, got .*; a device is passed by name: device="):
        make(nb)


def test_numpy_integers_are_accepted_as_sizes_like_pytorch_does(nb):
    """nn.Linear and nn.Conv2d take NumPy integers (anything operator.index takes); so do the own layers, with the
    same outputs."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 9, 8)
    for name in OWN_CONVS:
        size = {"kernel_size": (np.int64(3), np.int32(2)), "stride": np.int64(2), "padding": np.int16(1)}
        own = getattr(nb, name)(np.int64(3), np.int64(4), **size)
        reference = nn.Conv2d(np.int64(3), np.int64(4), **size)
        assert own.kernel_size == (3, 2) and all(type(v) is int for v in own.kernel_size + own.stride + own.padding)
        check_against(reference, own, x, 1e-5)
    own, reference = nb.myLinear(np.int64(8), np.int32(5)), nn.Linear(np.int64(8), np.int32(5))
    assert type(own.in_features) is int
    check_against(reference, own, torch.randn(4, 8), 1e-5)


@pytest.mark.parametrize("conv_name", OWN_CONVS)
@pytest.mark.parametrize("c_in, k, s, p, h, w", [(3, 5, 1, 0, 32, 32), (8, 5, 1, 0, 14, 14), (2, (3, 2), (2, 1), 1, 9, 7)])
def test_column_matrix_size_follows_from_the_shapes(nb, conv_name, c_in, k, s, p, h, w):
    """c_in K^2 h_out w_out values per image, checked against PyTorch's own im2col (F.unfold): 19.1 times the input
    for conv1 (28 x 28 outputs of a 32 x 32 input), 12.8 times for conv2, not K^2 = 25 times."""
    conv = getattr(nb, conv_name)(c_in, 4, k, stride=s, padding=p)
    columns = torch.nn.functional.unfold(torch.zeros(1, c_in, h, w), conv.kernel_size, padding=conv.padding,
                                         stride=conv.stride)
    x = torch.zeros(1, c_in, h, w)
    assert nb.column_matrix_values(conv, x) == columns.numel()
    assert conv(x).shape[2:] == conv.pad_input(x)[1]
    if (c_in, h) == (3, 32):
        assert round(nb.column_matrix_values(conv, x) / (c_in * h * w), 1) == 19.1
    if (c_in, h) == (8, 14):
        assert round(nb.column_matrix_values(conv, x) / (c_in * h * w), 1) == 12.8
