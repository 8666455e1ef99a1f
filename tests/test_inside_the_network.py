"""Task 3.3 and 3.4 code from the notebook: feature maps, Grad-CAM (captum and from scratch), the summary table."""
import matplotlib
import pytest
import torch
from conftest import CLASSES

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def model_and_images(nb):
    torch.manual_seed(0)
    return nb.ConvNet().eval(), torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8)


def as_input(images):
    return images.float() / 255 - 0.5


def test_minmax_per_channel_maps_into_unit_interval(nb):
    maps = torch.randn(3, 4, 6, 5) * 7 + 2
    maps[1, 2] = 3.0  # a constant channel
    out = nb.minmax_per_channel(maps)
    assert not out.isnan().any()
    assert out.min() == 0 and out.max() == 1
    assert torch.equal(out[1, 2], torch.zeros(6, 5))
    for i, c in ((0, 0), (2, 3)):
        assert out[i, c].min() == 0 and out[i, c].max() == 1


def test_feature_map_figure_holds_3_images_4_layers_5_channels(nb, model_and_images):
    model, images = model_and_images
    labels = torch.tensor([3, 8, 0])
    maps = {k: nb.minmax_per_channel(v) for k, v in nb.capture_feature_maps(model, as_input(images[:3])).items()}
    assert {k: tuple(v.shape) for k, v in maps.items()} == {
        "conv1": (3, 8, 28, 28), "pool1": (3, 8, 14, 14), "conv2": (3, 16, 10, 10), "pool2": (3, 16, 5, 5)}
    with torch.no_grad():  # the hooks saw exactly what the network computes
        assert torch.allclose(nb.capture_feature_maps(model, as_input(images[:3]))["pool1"],
                              torch.nn.Sequential(*list(model)[:3])(as_input(images[:3])))
    assert not model.conv1._forward_hooks  # hooks removed afterwards
    fig = nb.plot_feature_maps(images[:3], labels, maps, CLASSES)
    panels = [ax.images[0].get_array() for sub in fig.subfigs for ax in sub.axes if ax.images]
    channel_maps = [a for a in panels if a.ndim == 2]
    assert len(panels) - len(channel_maps) == 3  # the 3 inputs
    assert len(channel_maps) == 3 * 4 * 5
    assert all(0 <= a.min() and a.max() <= 1 for a in channel_maps)
    titles = [sub._suptitle.get_text() for sub in fig.subfigs]
    assert titles == ["image 1: cat", "image 2: ship", "image 3: airplane"]
    assert fig.subfigs[0].axes[1].get_ylabel().startswith("conv1")


def test_pick_distinct_classes(nb):
    assert nb.pick_distinct_classes(torch.tensor([4, 4, 2, 4, 2, 7, 1]), 3) == [0, 2, 5]


def test_pick_correct_and_wrong_is_seeded_and_short_when_needed(nb):
    preds, labels = torch.tensor([0, 1, 2, 3, 4, 5]), torch.tensor([0, 1, 2, 0, 0, 5])
    correct, wrong = nb.pick_correct_and_wrong(preds, labels, 10, seed=0)
    assert sorted(correct.tolist()) == [0, 1, 2, 5] and sorted(wrong.tolist()) == [3, 4]
    correct2, _ = nb.pick_correct_and_wrong(preds, labels, 2, seed=0)
    assert correct2.tolist() == nb.pick_correct_and_wrong(preds, labels, 2, seed=0)[0].tolist()
    assert len(correct2) == 2


def test_gradcam_from_scratch_matches_captum(nb, model_and_images):
    model, images = model_and_images
    x = as_input(images)
    targets = torch.arange(20) % 10
    ours = nb.gradcam_from_scratch(model, model.conv2, x, targets)
    theirs = nb.gradcam_captum(model, model.conv2, x, targets)
    assert ours.shape == theirs.shape == (20, 1, 10, 10)
    assert theirs.max() > 0  # not trivially zero
    assert (ours - theirs).abs().max() < 1e-5
    upsampled = nb.gradcam_captum(model, model.conv2, x, targets, size=(32, 32))
    assert upsampled.shape == (20, 1, 32, 32)


def test_gradcam_grid_draws_and_survives_an_all_zero_map(nb, model_and_images):
    model, images = model_and_images
    maps = nb.gradcam_captum(model, model.conv2, as_input(images[:3]), torch.tensor([1, 2, 3]), size=(32, 32))
    maps[1] = 0  # an all-zero map: captum alone would assert on a zero scale factor
    panels = [[(None, "image"), (maps[i], "predicted"), (maps[i], "true")] for i in range(3)]
    fig = nb.plot_gradcam_grid(images[:3], panels, "test", ncols=2)
    drawn = [ax for ax in fig.axes if ax.images]
    assert len(drawn) == 9
    assert sum("zero everywhere" in ax.get_title() for ax in drawn) == 2


def test_summary_table_formats_every_figure(nb):
    results = {"test accuracy": 0.7512, "seconds per epoch (median)": 1.234, "epochs": 30,
               "3.2 time ratio own/default, own, im2col, batch 20": 2.345, "3.4 Grad-CAM max |from scratch - captum|": 3e-8}
    lines = nb.summary_table(results).splitlines()
    assert len(lines) == 5
    assert lines[0].split()[-1] == "75.12%" and lines[1].split()[-1] == "s" and lines[2].split()[-1] == "30"
    assert lines[3].endswith("2.3x") and lines[4].endswith("3.00e-08")
