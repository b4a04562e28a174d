"""The open photo corpus (training/corpus.json): the split, the licences, the one-picture-per-file
rule, and the build's refusals. No package is downloaded here: CI checks the manifest and the
code; the corpus is built outside the tests (python -m training.corpus build DIR)."""

from __future__ import annotations

import numpy as np
import pytest

from lmfn_edge.io import save_image
from training import corpus
from training.skimage_photos import load_manifest as load_skimage_manifest

LICENCES = {"CC0-1.0", "CC-BY-4.0", "CC-BY-SA-3.0", "CC-BY-SA-4.0", "GPL-2+"}


def test_split_is_disjoint_by_pixels_from_every_held_out_set():
    m = corpus.load_manifest()
    photos = m["photos"]
    train = {e["sha256"] for e in photos if e["split"] == "train"}
    held = {e["sha256"] for e in photos if e["split"] == "heldout"}
    sources = [e["source_sha256"] for e in photos]
    assert len(set(sources)) == len(sources) and len({e["name"] for e in photos}) == len(photos)
    assert train and held and not train & held
    skimage = load_skimage_manifest()
    assert not (train | {e["sha256"] for e in skimage["train"]}) & (held | {e["sha256"] for e in skimage["heldout"]})
    # About a tenth held out, fixed in the manifest.
    assert len(held) == round(len(photos) / 10)


def test_every_kept_photo_has_its_licence_and_attribution():
    m = corpus.load_manifest()
    assert tuple(m["packages"]) == corpus.PACKAGES
    for e in m["photos"]:
        assert e["package"] in corpus.PACKAGES
        assert e["license"] in LICENCES, e
        assert e["attribution"].strip() and e["copyright"].strip(), e
        assert len(e["source_sha256"]) == 64 and len(e["sha256"]) == 64
        assert max(e["shape"][:2]) <= corpus.MAX_SIDE and e["shape"][2] == 3


def test_one_file_per_picture_and_every_other_file_accounted_for():
    m = corpus.load_manifest()
    kept = {(e["package"], e["file"]) for e in m["photos"]}
    dropped = {(e["package"], e["file"]) for e in m["dropped"]}
    assert not kept & dropped
    pictures = [corpus.Candidate(e["package"], e["file"], 0, 0).picture for e in m["photos"]]
    assert len(set(pictures)) == len(pictures)
    for e in m["dropped"]:
        assert e["reason"] == "graphic" or e["reason"].split(" of ")[0] in ("smaller copy", "dark variant", "preview")


def test_licence_comes_from_the_dep5_stanza_that_matches_the_file():
    text = ("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
            "Files: *\nCopyright: 2014 Somebody\nLicense: GPL-2+\n\n"
            "Files: 16.04/a_by_X.jpg\n 16.04/b_by_Y.jpg\nCopyright: X, 2018\nLicense: CC-BY-4.0\n\n"
            "Files: debian/*\n 16.04/.placeholder\nCopyright: 2018, Packager\nLicense: Expat\n")
    assert corpus.license_of(text, "usr/share/backgrounds/b_by_Y.jpg") == ("CC-BY-4.0", "X, 2018")
    assert corpus.license_of(text, "usr/share/wallpapers/Z/contents/images/1x1.png") == ("GPL-2+", "2014 Somebody")


def test_texture_measure_separates_flat_graphics_from_photographic_noise():
    rng = np.random.default_rng(0)
    flat = np.zeros((256, 256, 3), np.uint8)
    flat[:, 128:] = 200  # two flat areas and one edge
    # A wallpaper-like gradient: black to white across 2048 px (measured at 1024 px wide).
    gradient = np.repeat(np.linspace(0, 255, 2048).astype(np.uint8)[None, :, None], 64, 0).repeat(3, 2)
    noisy = np.clip(rng.normal(128, 20, (256, 256, 3)), 0, 255).astype(np.uint8)
    assert corpus.textured(flat) < 0.1 and corpus.textured(gradient) < 0.1 and corpus.textured(noisy) > 0.9


def test_build_refuses_a_picture_whose_pixels_differ(tmp_path, monkeypatch):
    package, file = "lomiri-wallpapers-16.04", "usr/share/backgrounds/x.jpg"
    root = tmp_path / "unpacked" / package
    (root / "usr/share/doc" / package).mkdir(parents=True)
    (root / "usr/share/doc" / package / "copyright").write_text("Files: *\nCopyright: X\nLicense: CC0-1.0\n")
    save_image(root / file, np.full((8, 8, 3), 7, np.uint8))
    manifest = {"packages": {package: {"copyright": f"usr/share/doc/{package}/copyright"}},
                "photos": [{"name": "x", "package": package, "file": file, "license": "CC0-1.0",
                            "source_sha256": "0" * 64, "sha256": "0" * 64, "split": "train", "textured": 0.5}]}
    monkeypatch.setattr(corpus, "fetch", lambda work, packages: {package: root})
    with pytest.raises(corpus.CorpusError, match="pixels differ from the manifest"):
        corpus.build(tmp_path / "out", tmp_path, manifest, progress=False)
    manifest["photos"][0]["license"] = "CC-BY-4.0"
    with pytest.raises(corpus.CorpusError, match="copyright file now says 'CC0-1.0'"):
        corpus.build(tmp_path / "out", tmp_path, manifest, progress=False)
    assert not list((tmp_path / "out").rglob("*.png"))
