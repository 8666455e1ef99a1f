"""Part B's explorer for the oral: any test image or a photo, its prediction, Grad-CAM map and feature maps."""
import re

import matplotlib
import numpy as np
import pytest
import torch
from conftest import CLASSES
from PIL import Image

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def setting(nb):
    """A random network, the same network from the own layers, and 40 test images with labels that make some of its
    predictions right and some wrong."""
    torch.manual_seed(0)
    model = nb.ConvNet().eval()
    own = nb.ConvNet(nb.myConv2d, nb.myLinear).eval()
    own.load_state_dict(model.state_dict())
    images = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8)
    normalize = nb.make_normalize(images)
    preds = nb.predict_logits(model, images, normalize).argmax(1)
    labels = preds.clone()
    labels[[3, 7, 8, 21]] = (preds[[3, 7, 8, 21]] + 1) % 10  # these four are misclassified
    return model, own, normalize, (images, labels, preds)


def explore(nb, setting, index=0, explain="predicted", image_file=""):
    model, own, normalize, test_data = setting
    return nb.explore(model, own, normalize, test_data, index, explain, image_file, CLASSES)


def titles(fig):
    return [ax.get_title() for ax in fig.axes if ax.get_title()]


def test_next_misclassified_steps_through_the_errors_and_starts_again(nb):
    preds, labels = torch.tensor([0, 1, 2, 3, 4, 5]), torch.tensor([0, 9, 2, 9, 4, 5])
    assert [nb.next_misclassified(preds, labels, i) for i in (-1, 0, 1, 2, 3, 5)] == [1, 1, 3, 3, 1, 1]
    assert nb.next_misclassified(preds, preds, 2) is None


def test_class_to_explain(nb):
    assert nb.class_to_explain("predicted", 3, 5, CLASSES) == 3
    assert nb.class_to_explain("true", 3, 5, CLASSES) == 5
    assert nb.class_to_explain("true", 3, None, CLASSES) == 3  # a photo has no true class
    assert nb.class_to_explain("ship", 3, 5, CLASSES) == 8
    with pytest.raises(ValueError, match=r'EXPLAIN must be "predicted", "true" or a class name \(airplane, .*\), '
                                         r"got 'boat'"):
        nb.class_to_explain("boat", 3, 5, CLASSES)


@pytest.mark.parametrize("index, explain", [(0, "predicted"), (0, "true"), (3, "predicted"), (3, "true"),
                                            (3, "frog")])
def test_explorer_at_a_correct_and_a_misclassified_image(nb, setting, index, explain):
    _, _, _, (_, labels, preds) = setting
    fig, line = explore(nb, setting, index, explain)
    true, pred = CLASSES[labels[index]], CLASSES[preds[index]]
    explained = {"predicted": pred, "true": true}.get(explain, explain)
    following = {0: 3, 3: 7}[index]
    assert re.fullmatch(rf"test image {index}: true class {true}; predicted {pred} \(\d+%\); the network from the own "
                        rf"layers predicts the same; next misclassified test image: {following}", line), line
    shown = titles(fig)
    assert f"test image {index}, 32x32" in shown
    assert any(t.startswith(f"Grad-CAM for {explained}\n") for t in shown), shown
    bars = next(ax for ax in fig.axes if ax.get_title() == "the network's class probabilities")
    assert len(bars.patches) == 10 and bars.get_xlabel() == "probability"
    labels_shown = [t.get_text() for t in bars.get_yticklabels()]
    if index == 0:
        assert labels_shown[labels[0]] == f"{true} (true) (predicted)"
    else:
        assert labels_shown[labels[3]] == f"{true} (true)" and labels_shown[preds[3]] == f"{pred} (predicted)"
    feature_maps = [ax for ax in fig.axes if ax.images and ax.images[0].get_array().ndim == 2 and
                    ax.images[0].get_clim() == (0, 1) and len(ax.images) == 1]
    assert len(feature_maps) == 4 * 5  # four layers, five channels
    width, height = fig.get_size_inches() * 100
    assert width <= 1400 and height <= 1000


def test_explorer_wraps_to_the_first_error_after_the_last(nb, setting):
    assert explore(nb, setting, 39)[1].endswith("next misclassified test image: 3")


def test_test_index_out_of_range_names_the_field(nb, setting):
    with pytest.raises(ValueError, match=r"TEST_INDEX \(the test split has 40 images\) must be an integer from 0 to "
                                         r"39, got 40"):
        explore(nb, setting, 40)


@pytest.mark.parametrize("name, size", [("wide.png", (3, 45, 80)), ("tall.jpg", (3, 90, 50)), ("gray.png", (1, 40, 40))])
def test_a_photo_is_cropped_shrunk_and_explained(nb, setting, tmp_path, name, size):
    torch.manual_seed(1)
    picture = torch.randint(0, 256, size, dtype=torch.uint8)
    path = tmp_path / name
    Image.fromarray(picture.permute(1, 2, 0).squeeze(-1).numpy()).save(path)
    square, small, notes = nb.load_photo(path)
    side = min(size[1:])
    assert notes == []  # an 8-bit, opaque picture, large and near square: nothing to say
    assert square.shape == (3, side, side) and small.shape == (3, 32, 32) and small.dtype == torch.uint8
    if name == "wide.png":  # the centred square: 45 of 80 columns, 17.5 on either side, rounded to start at 18
        assert torch.equal(square, picture[:, :, 18:63])
    fig, line = explore(nb, setting, 0, "true", str(path))
    assert re.fullmatch(rf"photo {name}: predicted \w+ \(\d+%\); the network from the own layers predicts the same; "
                        r"a photo has no true class, so Grad-CAM explains the predicted one; next misclassified test "
                        r"image: 3", line), line
    assert {"the photo, cropped", f"photo {name}, 32x32"} <= set(titles(fig))


def saved(tmp_path, name, array, mode=None):
    path = tmp_path / name
    Image.fromarray(array, mode=mode).save(path)
    return path


def test_a_16_bit_grey_png_is_scaled_to_8_bits_not_clipped(nb, setting, tmp_path):
    """Pillow opens a 16-bit PNG as mode I;16 or I; converted to RGB as it is, every value above 255 turns white."""
    ramp = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)
    path = saved(tmp_path, "depth.png", ramp)
    square, _, notes = nb.load_photo(path)
    assert notes == ["16-bit values scaled to 8 bits"]
    assert square[0, 0, 0] == 0 and square[0, -1, -1] == 255 and 120 < square[0, 32, 0] < 136  # mid-grey mid-way
    assert torch.equal(square[0], square[1]) and torch.equal(square[1], square[2])
    line = explore(nb, setting, 0, "predicted", str(path))[1]
    assert line.startswith("photo depth.png: 16-bit values scaled to 8 bits; predicted ")


def test_transparency_is_shown_on_white_and_said(nb, setting, tmp_path):
    """An RGBA PNG whose transparent pixels hide red: what a viewer shows is the white background, not the red."""
    rgba = np.zeros((40, 40, 4), dtype=np.uint8)
    rgba[..., 0], rgba[10:30, 10:30] = 255, (0, 0, 255, 255)  # hidden red everywhere, an opaque blue square
    square, _, notes = nb.load_photo(saved(tmp_path, "logo.png", rgba, "RGBA"))
    assert notes == ["its transparent pixels shown on white"]
    assert square[:, 0, 0].tolist() == [255, 255, 255] and square[:, 20, 20].tolist() == [0, 0, 255]
    opaque = rgba.copy()
    opaque[..., 3] = 255
    assert nb.load_photo(saved(tmp_path, "opaque.png", opaque, "RGBA"))[2] == []  # an alpha channel, nothing hidden


def test_an_animation_says_that_its_first_frame_is_used(nb, setting, tmp_path):
    frames = [Image.new("RGB", (40, 40), colour) for colour in ("red", "green", "blue")]
    frames[0].save(tmp_path / "wave.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    square, _, notes = nb.load_photo(tmp_path / "wave.gif")
    assert notes == ["an animation: its first frame of 3 is used"]
    assert square[:, 20, 20].tolist() == [255, 0, 0]  # red, the first frame
    line = explore(nb, setting, 0, "predicted", str(tmp_path / "wave.gif"))[1]
    assert line.startswith("photo wave.gif: an animation: its first frame of 3 is used; ")


@pytest.mark.parametrize("width, height, said", [
    (1, 1, ["1x1 pixels, smaller than 32 on a side: enlarged"]),
    (3000, 1, ["3000x1 pixels, smaller than 32 on a side: enlarged",
               "3000x1 pixels, far from square: only its centred 1x1 square is shown"]),
    (300, 100, ["300x100 pixels, far from square: only its centred 100x100 square is shown"]),
    (60, 40, [])])
def test_a_small_or_far_from_square_image_is_named(nb, setting, tmp_path, width, height, said):
    path = saved(tmp_path, "odd.png", np.full((height, width, 3), 200, dtype=np.uint8))
    square, small, notes = nb.load_photo(path)
    assert notes == said and small.shape == (3, 32, 32) and square.shape[1:] == (min(width, height),) * 2
    if said:
        assert "; ".join(said) in explore(nb, setting, 0, "predicted", str(path))[1]


def test_a_folder_is_called_a_folder(nb, setting, tmp_path):
    with pytest.raises(ValueError, match=rf"IMAGE_FILE = '{re.escape(str(tmp_path))}' is a folder, not an image file"):
        explore(nb, setting, 0, "predicted", str(tmp_path))


@pytest.mark.parametrize("content, message", [(None, "no such file"), (b"", "not an image Pillow can read"),
                                              (b"notes, not a picture\n", "not an image Pillow can read")])
def test_a_bad_image_file_stops_with_the_field_and_what_it_accepts(nb, setting, tmp_path, content, message):
    path = tmp_path / "upload.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=rf"IMAGE_FILE = '{re.escape(str(path))}'(:| is) .*{message}.*IMAGE_FILE "
                                         r"accepts the path of an image file Pillow reads"):
        explore(nb, setting, 0, "predicted", str(path))


def test_an_empty_image_file_means_a_test_image(nb, setting):
    assert explore(nb, setting, 5, "predicted", "")[1].startswith("test image 5: true class")
