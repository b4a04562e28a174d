"""The default weights' data split: held-out photos are disjoint from training, by name and by
pixels, and the split matches scikit-image's bundled images."""

from training.skimage_photos import load_manifest, photo, pixel_sha256


def test_split_is_disjoint_and_keeps_colour_photos_out():
    m = load_manifest()
    train, held = m["train"], m["heldout"]
    assert not {e["name"] for e in train} & {e["name"] for e in held}
    assert not {e["sha256"] for e in train} & {e["sha256"] for e in held}
    assert sum(e["colour"] for e in held) >= 4
    # The two stereo views are nearly the same picture: both on the training side.
    motorcycle = {e["name"] for e in train if "motorcycle" in e["name"]}
    assert motorcycle == {"stereo_motorcycle_left", "stereo_motorcycle_right"}


def test_manifest_hashes_match_the_installed_images():
    m = load_manifest()
    for entry in m["train"] + m["heldout"]:
        img = photo(entry["name"])
        assert list(img.shape) == entry["shape"]
        assert pixel_sha256(img) == entry["sha256"], entry["name"]
