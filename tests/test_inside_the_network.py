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
        "conv1 + ReLU": (3, 8, 28, 28), "pool1": (3, 8, 14, 14), "conv2 + ReLU": (3, 16, 10, 10), "pool2": (3, 16, 5, 5)}
    raw = nb.capture_feature_maps(model, as_input(images[:3]))
    with torch.no_grad():  # the hooks saw exactly what the network computes: the convolutions after their ReLU
        assert torch.allclose(raw["conv1 + ReLU"], torch.relu(model.conv1(as_input(images[:3]))))
        assert torch.allclose(raw["pool1"], torch.nn.Sequential(*list(model)[:3])(as_input(images[:3])))
    assert raw["conv2 + ReLU"].min() == 0  # the ReLU cut something: after scaling, dark is zero there
    assert not model.conv1._forward_hooks  # hooks removed afterwards
    fig = nb.plot_feature_maps(images[:3], labels, maps, CLASSES)
    panels = [ax.images[0].get_array() for sub in fig.subfigs for ax in sub.axes if ax.images]
    channel_maps = [a for a in panels if a.ndim == 2]
    assert len(panels) - len(channel_maps) == 3  # the 3 inputs
    assert len(channel_maps) == 3 * 4 * 5
    assert all(0 <= a.min() and a.max() <= 1 for a in channel_maps)
    titles = [sub._suptitle.get_text() for sub in fig.subfigs]
    assert titles == ["image 1: cat", "image 2: ship", "image 3: airplane"]
    first = fig.subfigs[0].axes
    assert first[0].get_title() == "input" and first[1].get_title().startswith("conv1")
    assert first[1].get_ylabel() == "channel 0"
    width, height = fig.get_size_inches() * 100  # pixels at 100 dpi
    assert width <= 1400 and height <= 700, "the figure must fit on one laptop screen"


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


def test_receptive_field_of_each_layer(nb):
    model = nb.ConvNet()
    for layer, jump, start in (("conv1", 1, 2), ("pool1", 2, 2.5), ("conv2", 2, 6.5), ("pool2", 4, 7.5)):
        jumps, starts = nb.receptive_field(model, layer)
        assert list(jumps) == [jump] * 2 and list(starts) == [start] * 2, layer
    with pytest.raises(ValueError, match="no layer named 'conv9'"):
        nb.receptive_field(model, "conv9")


@pytest.mark.parametrize("row, col", [(0, 0), (3, 7), (9, 9), (5, 0)])
def test_aligned_gradcam_peaks_at_the_cell_receptive_field_centre(nb, row, col):
    """A map that is zero except one cell: after alignment its peak sits on that cell's receptive-field centre,
    6.5 + 2 q, exactly between two pixels, so the two pixels beside the centre share the peak, at the border too."""
    jump, start = nb.receptive_field(nb.ConvNet(), "conv2")
    cam = torch.zeros(1, 1, 10, 10)
    cam[0, 0, row, col] = 1.0
    aligned = nb.align_to_input(cam, jump, start, (32, 32))[0, 0]
    assert aligned.shape == (32, 32)
    peak_rows, peak_cols = torch.nonzero(aligned == aligned.max(), as_tuple=True)
    assert peak_rows.float().mean().item() == 6.5 + 2 * row
    assert peak_cols.float().mean().item() == 6.5 + 2 * col
    assert aligned[:5].sum() == aligned[:, :5].sum() == aligned[27:].sum() == aligned[:, 27:].sum() == 0  # no cell there
    assert aligned.sum() == pytest.approx(4 * cam.sum())  # bilinear x2: each cell spreads over 4 pixels' worth
    stretched = nb.resize_to_image(cam, (32, 32))[0, 0]  # the literal stretch puts it elsewhere near the border
    if row in (0, 9):
        assert abs(torch.nonzero(stretched == stretched.max())[:, 0].float().mean().item() - (6.5 + 2 * row)) > 3


def heat_panels(fig):
    """The axes of a figure that hold a heat map blended over a grayscale image, as captum draws them."""
    return [ax for ax in fig.axes if len(ax.images) == 2]


def test_gradcam_is_drawn_by_captum_each_map_on_its_own_scale(nb, model_and_images):
    """captum's visualize_image_attr scales each map on its own, so a weak map shows where it looks as clearly as a
    strong one; the peak in the title keeps the magnitudes. An all-zero map, which captum cannot scale, is drawn as
    the image alone and says so."""
    _, images = model_and_images
    strong, weak = torch.zeros(3, 32, 32), torch.zeros(3, 32, 32)
    strong[:, 10:20, 10:20], weak[:, 10:20, 10:20] = 2.0, 0.5
    weak[1] = 0
    rows = [(f"image {i}", [(strong[i], "predicted"), (weak[i], "true")]) for i in range(3)]
    fig = nb.plot_gradcam(images[:3], rows, "test", ncols=3)
    heat = heat_panels(fig)
    assert len(heat) == 5  # three strong maps, two weak ones; the zero map has the image alone
    blended = [ax.images[1].get_array() for ax in heat]
    assert all(b.max() == pytest.approx(1.0) and b.min() == 0 for b in blended)  # every map on a scale of its own
    assert all(ax.images[1].get_clim() == (0, 1) for ax in heat)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert "predicted\npeak 2.000" in titles and "true\npeak 0.500" in titles and "true\nzero everywhere" in titles
    assert [ax.get_label() for ax in fig.axes].count("<colorbar>") == 1
    assert nb.plot_gradcam(images[:0], [], "nothing", ncols=3) is None


def test_gradcam_rows_show_the_true_class_only_for_wrong_predictions(nb):
    maps = torch.rand(3, 32, 32)
    rows = nb.gradcam_rows(maps, maps * 2, torch.tensor([3, 5, 0]), torch.tensor([3, 1, 0]),
                           torch.tensor([0.9, 0.55, 0.3]), CLASSES)
    assert rows[0][0] == "true: cat\npredicted: cat (90%)" and [t for _, t in rows[0][1]] == ["for cat"]
    assert rows[1][0] == "true: dog\npredicted: automobile (55%)"
    assert [t for _, t in rows[1][1]] == ["for automobile", "for dog"] and torch.equal(rows[1][1][1][0], maps[1] * 2)


def test_gradcam_checks_count_zero_maps(nb):
    pred, true = torch.ones(4, 32, 32), torch.ones(4, 32, 32)
    pred[0], true[3] = 0, 0
    assert nb.gradcam_checks(pred, true, n_correct=2) == {
        "3.4 images: correctly, wrongly classified": (2, 2), "3.4 predicted-class maps that are zero": 1,
        "3.4 true-class maps of misclassified images that are zero": 1}


@pytest.mark.parametrize("count, ncols, maps_per_image", [(10, 5, 1), (10, 3, 2)])
def test_gradcam_figures_fit_a_laptop_screen(nb, model_and_images, count, ncols, maps_per_image):
    """At most 1,400 x 1,000 pixels at matplotlib's 100 dpi, wider than high: two rows of five correct images, four
    rows of three misclassified ones."""
    _, images = model_and_images
    maps = torch.rand(count, 32, 32)
    rows = [("true: automobile\npredicted: airplane (99%)", [(m, "for airplane")] * maps_per_image) for m in maps]
    fig = nb.plot_gradcam(images[:count], rows, "size", ncols=ncols)
    width, height = fig.get_size_inches() * 100
    assert width <= 1400 and height <= 1000 and width > height


def test_filters_are_drawn_as_colour_patches(nb):
    model = nb.ConvNet()
    fig = nb.plot_filters(model.conv1.weight, "conv1")
    patches = [ax.images[0].get_array() for ax in fig.axes]
    assert len(patches) == 8 and all(p.shape == (5, 5, 3) and p.min() >= 0 and p.max() <= 1 for p in patches)
    assert all(p.min() == 0 and p.max() == 1 for p in patches)  # each filter scaled as a whole
    assert fig._suptitle.get_text() == "conv1"


def test_gradcam_observations_hold_for_any_run(nb):
    pred_maps, true_maps = torch.ones(3, 32, 32), torch.zeros(3, 32, 32)
    true_maps[2, 12:20, 12:20] = 2.0
    text = nb.describe_gradcam(pred_maps, true_maps, torch.tensor([4, 4, 2]), CLASSES)
    assert "The 3 wrong predictions go to 2 different classes; deer is predicted most often (2 times)." in text
    assert "In 2 of them the predicted class's map peaks higher than the true class's; in 2 the true class's map " \
           "is zero everywhere" in text
    tie = nb.describe_gradcam(torch.ones(5, 32, 32), torch.zeros(5, 32, 32), torch.tensor([1, 4, 4, 1, 2]), CLASSES)
    assert "go to 3 different classes; automobile and deer are each predicted most often (2 times)." in tie
    spread = nb.describe_gradcam(pred_maps[:2], true_maps[:2], torch.tensor([1, 4]), CLASSES)
    assert spread.startswith("The 2 wrong predictions go to 2 different classes.\n")
    assert nb.describe_gradcam(pred_maps[:0], true_maps[:0], torch.tensor([], dtype=torch.long), CLASSES) == \
        "No misclassified image among those picked."


def test_results_table_formats_every_figure(nb):
    results = {"1.2 test accuracy": 0.7512, "1.2 seconds of training": 61.234, "1.2 epochs": 30,
               "1.2 training loss, last epoch": 0.61234, "3.3 every channel scaled to [0, 1]": True,
               "3.4 images: correctly, wrongly classified": (10, 9),
               "3.2 time ratio own/default (means), own, im2col, batch 20": 2.345,
               "3.4 Grad-CAM max |from scratch - captum|": 3e-8, "1.0 Google Drive": "mounted"}
    lines = nb.results_table(results).splitlines()
    assert [line.split("  ")[-1].strip() for line in lines] == ["75.12%", "61.2 s", "30", "0.612", "yes", "10, 9", "2.3x",
                                                                    "3.00e-08", "mounted"]
