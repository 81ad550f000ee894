"""image_dataset: every source gives images + labels + class names; bad folders and empty inputs say why."""
import numpy as np
import pytest
import torch
from PIL import Image

from cnnviz_widgets.core.datasets import image_dataset
from cnnviz_widgets.core.shapes import SHAPE_CLASSES, make_shapes


def test_shapes_keep_labels_and_masks_of_make_shapes():
    data = image_dataset("shapes", n=24, seed=3)
    ref = make_shapes(24, seed=3)
    assert len(data) == 24 and data.class_names == list(SHAPE_CLASSES)
    np.testing.assert_array_equal(data.images, ref.images)
    np.testing.assert_array_equal(data.labels, ref.labels)
    np.testing.assert_array_equal(data.masks, ref.masks)
    image, label = data[5]
    assert label == ref.labels[5] and np.array_equal(image, ref.images[5])


def test_folder_one_subfolder_per_class_skips_and_counts_non_images(tmp_path):
    rng = np.random.default_rng(0)
    pictures = {}
    for cls, count in (("cat", 2), ("dog", 1)):
        (tmp_path / cls).mkdir()
        for i in range(count):
            arr = rng.integers(0, 255, (10, 12, 3), dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / cls / f"{i}.png")
            pictures[(cls, i)] = arr
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    (tmp_path / "dog" / "broken.png").write_bytes(b"\x89PNG but truncated")
    data = image_dataset(tmp_path)
    assert data.lazy and len(data) == 3 and data.skipped == 2
    assert data.class_names == ["cat", "dog"] and list(data.labels) == [0, 0, 1]
    np.testing.assert_array_equal(data.image(2), pictures[("dog", 0)])
    assert "2 non-image files skipped" in repr(data)
    assert data.thumbnails(8).shape == (3, 8, 8, 3)


def test_folder_without_images_and_missing_folder_are_clear_errors(tmp_path):
    (tmp_path / "empty_class").mkdir()
    (tmp_path / "empty_class" / "readme.md").write_text("x")
    with pytest.raises(ValueError, match="no images found.*1 other files skipped"):
        image_dataset(tmp_path)
    with pytest.raises(ValueError, match="no such folder"):
        image_dataset(tmp_path / "nope")


def test_arrays_tensors_and_lists():
    imgs = np.random.default_rng(1).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    data = image_dataset(imgs, labels=[0, 1, 1, 0], class_names=["a", "b"])
    assert data.label_name(1) == "b"
    chw = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255
    np.testing.assert_array_equal(image_dataset(chw).images, imgs)
    mixed = image_dataset([imgs[0], np.zeros((20, 30, 3), np.uint8)])
    assert mixed.images.shape == (2, 16, 16, 3)  # one common square size


@pytest.mark.parametrize("bad, match", [
    (np.zeros((0, 8, 8, 3), np.uint8), "empty"),
    ([], "empty"),
    (np.zeros((8, 8, 3), np.uint8), "4-D"),
    (42, "takes a folder path"),
])
def test_bad_sources(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        image_dataset(bad)


def test_label_checks_and_index_range():
    imgs = np.zeros((3, 8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="3 images but labels of shape"):
        image_dataset(imgs, labels=[0, 1])
    with pytest.raises(ValueError, match="only 1 class names"):
        image_dataset(imgs, labels=[0, 1, 2], class_names=["a"])
    with pytest.raises(IndexError, match="out of range"):
        image_dataset(imgs).image(3)
    with pytest.raises(ValueError, match="n >= 1"):
        image_dataset("shapes", n=0)
