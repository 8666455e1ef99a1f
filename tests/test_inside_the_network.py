"""Task 3.3 and 3.4 code from the notebook: feature maps, Grad-CAM (captum and from scratch), and what they show."""
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
    nb.plot_feature_maps(images[:3], labels.tolist(), maps, CLASSES)
    fig = matplotlib.pyplot.gcf()
    fig.canvas.draw()  # constrained layout places the panels when the figure is drawn
    inputs = [ax for ax in fig.axes if ax.images and ax.images[0].get_array().ndim == 3]
    channel_axes = [ax for ax in fig.axes if ax.images and ax.images[0].get_array().ndim == 2]
    assert [ax.get_title() for ax in inputs] == ["cat", "ship", "airplane"]  # each block opens with its image
    assert len(channel_axes) == 3 * 4 * 5
    assert all(0 <= ax.images[0].get_array().min() and ax.images[0].get_array().max() <= 1 for ax in channel_axes)
    assert [ax.get_title().split("\n")[0] for ax in channel_axes[:4]] == list(maps)  # a column per layer
    assert [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel().startswith("channel")] == [
        f"channel {c}" for _ in range(3) for c in range(5)]  # the rows named beside every image's block
    assert [ax.get_ylabel() for ax in fig.axes if "scaled" in ax.get_ylabel()] == ["each channel scaled to [0, 1]"]
    width, height = fig.get_size_inches() * 100  # pixels at 100 dpi
    assert width <= 1400 and height <= 700, "the figure must fit on one laptop screen"
    smallest = min(ax.get_window_extent().width for ax in channel_axes)
    assert smallest >= 70, f"panels of {smallest:.0f} px: too small to read"


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
    maps = torch.zeros(3, 2, 32, 32)
    maps[:, 0, 10:20, 10:20], maps[:, 1, 10:20, 10:20] = 2.0, 0.5  # per image: a strong map, a weak one
    maps[1, 1] = 0
    nb.plot_gradcam(images[:3], maps, ["image 0", "image 1", "image 2"], "test", ncols=3)
    fig = matplotlib.pyplot.gcf()
    heat = heat_panels(fig)
    assert len(heat) == 5  # three strong maps, two weak ones; the zero map has the image alone
    blended = [ax.images[1].get_array() for ax in heat]
    assert all(b.max() == pytest.approx(1.0) and b.min() == 0 for b in blended)  # every map on a scale of its own
    assert all(ax.images[1].get_clim() == (0, 1) for ax in heat)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles[:3] == ["image 0", "peak 2", "peak 0.5"] and "zero everywhere" in titles
    colorbars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(colorbars) == 1
    assert colorbars[0].get_ylabel() == "each map on captum's scale: its hottest\n2 % at 1; titles: its raw peak"


def overlapping_titles(fig):
    """Pairs of axes titles whose drawn boxes overlap."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [(ax.get_title(), ax.title.get_window_extent(renderer)) for ax in fig.axes if ax.get_title()]
    return [(a, b) for i, (a, box_a) in enumerate(boxes) for b, box_b in boxes[i + 1:] if box_a.overlaps(box_b)]


@pytest.mark.parametrize("count, ncols, maps_per_image", [(20, 5, 1), (10, 4, 2)])
def test_gradcam_figures_fit_a_laptop_screen_and_no_titles_collide(nb, model_and_images, count, ncols,
                                                                   maps_per_image):
    """At most 1,400 x 1,000 pixels at matplotlib's 100 dpi: Task 3.4's four rows of five images, Part B's three rows
    of four misclassified ones with both maps; with the longest class names, no title runs into its neighbour's."""
    _, images = model_and_images
    maps = torch.rand(count, maps_per_image, 32, 32) * 0.0123
    titles = ["pred. automobile 100%" if i % 2 else "true automobile\npred. automobile 100%" for i in range(count)]
    nb.plot_gradcam(images[:count], maps, titles, "size", ncols=ncols)
    fig = matplotlib.pyplot.gcf()
    width, height = fig.get_size_inches() * 100
    assert width <= 1400 and height <= 1000
    assert not overlapping_titles(fig)


def test_filters_are_drawn_as_colour_patches(nb):
    model = nb.ConvNet()
    fig = nb.plot_filters(model.conv1.weight, "conv1")
    patches = [ax.images[0].get_array() for ax in fig.axes]
    assert len(patches) == 8 and all(p.shape == (5, 5, 3) and p.min() >= 0 and p.max() <= 1 for p in patches)
    assert all(p.min() == 0 and p.max() == 1 for p in patches)  # each filter scaled as a whole
    assert fig._suptitle.get_text() == "conv1"


def test_peaks_agree_counts_same_or_neighbouring_cells_among_maps_with_a_peak(nb):
    cams, others = torch.zeros(3, 1, 10, 10), torch.zeros(3, 1, 10, 10)
    cams[0, 0, 3, 7], others[0, 0, 4, 8] = 1.0, 1.0  # neighbours
    cams[1, 0, 9, 0], others[1, 0, 7, 0] = 2.0, 1.0  # two cells apart
    cams[2, 0, 5, 5] = 1.0  # the other map is zero: no peak to compare
    assert nb.peaks_agree(cams, others) == (1, 2)


def test_gradcam_findings_are_computed_from_the_maps(nb, model_and_images):
    """The central shares over all test images, correct against misclassified, beside an even spread; where the two
    maps of each misclassified image peak, beside two unrelated peaks: as central_share and peaks_agree give them."""
    model, images = model_and_images
    normalize = nb.make_normalize(images)
    preds = nb.predict_logits(model, images, normalize).argmax(1)
    labels = preds.clone()
    labels[10:] = (preds[10:] + 1) % 10  # the first 10 predictions right, the last 10 wrong
    lines = nb.gradcam_findings(model, normalize, images, labels, preds).splitlines()
    every_cams = nb.gradcam_captum(model, model.conv2, normalize(images), preds)
    every = every_cams[:, 0, 2:8, 2:8].sum((1, 2)) / every_cams[:, 0].sum((1, 2))  # the central 6 x 6 of 10 x 10
    assert lines[:2] == ["share of a map's heat in the central 6x6 of conv2's 10x10 cells, all 20 test images:",
                         (f"  {every[:10].nanmean():.0%} for the 10 correct, {every[10:].nanmean():.0%} for the 10 "
                          "misclassified; spread evenly: 36%")]
    agree, pairs = nb.peaks_agree(every_cams[10:], nb.gradcam_captum(model, model.conv2, normalize(images[10:]),
                                                                     labels[10:]))
    assert lines[2:] == [("misclassified images whose predicted- and true-class maps peak in the same or neighbouring "
                          "cells:"),
                         (f"  {agree} of {pairs} (the 10 less {10 - pairs} whose true-class map is zero): "
                          f"{agree / pairs:.1%}; two unrelated peaks, by chance: 7.8%")]  # (28/100)^2


def test_feature_map_findings_are_computed_from_the_maps(nb, model_and_images):
    """For each ReLU: the zeros on the drawn images beside those on many, and the channels silent on all of those."""
    model, images = model_and_images
    raw = nb.capture_feature_maps(model, as_input(images[:3]))
    many = nb.capture_feature_maps(model, as_input(images))
    many["conv2 + ReLU"][:, 4] = 0  # a channel that never fires
    lines = list(nb.feature_map_findings(raw, many))
    assert len(lines) == 2
    for line, name, channels in zip(lines, ("conv1 + ReLU", "conv2 + ReLU"), (8, 16)):
        zeros = [(maps[name] == 0).float().mean().item() for maps in (raw, many)]
        silent = int((many[name].amax(dim=(0, 2, 3)) == 0).sum())
        assert silent >= (name == "conv2 + ReLU")
        assert line == (f"{name}: values set to zero by the ReLU: {zeros[0]:.0%} on the 3 images drawn, "
                        f"{zeros[1]:.0%} on 20 test images; channels zero on all 20: {silent} of {channels}")
