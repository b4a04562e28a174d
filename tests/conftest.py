"""Shared fixtures: one thread, tiny models, and exported programs lowered once per session.

Lowering dominates the suite's time (it grows with the graph's node count), so the programs
several test files need are exported here once, from the smallest models that still hold the
parts under test: pattern "I" (one IFM block) contains LKA, MSM (DSConvs of both orientations
at four pooling levels) and IFM itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import OVERLAP, TILE, TINY_L, tiny_model


def _one_thread():
    # Two intra-op threads on a shared 2-core machine spin-wait on each other and run up to 20x
    # slower; training tests also need one thread count throughout for bit-exact resume checks.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


one_thread = pytest.fixture(_one_thread, name="one_thread")
# For module-scoped fixtures that train (their runs and the tests' runs must share a thread count).
one_thread_module = pytest.fixture(_one_thread, scope="module", name="one_thread_module")


@pytest.fixture(scope="session")
def fixed_pte(tmp_path_factory):
    """``(model, ExportResult)``: the x2 TINY model as an XNNPACK .pte with a 24x24 tile."""
    from lmfn_edge.deployment import export
    from lmfn_edge.manifest import ShapeSpec

    model = tiny_model(2)
    folder = tmp_path_factory.mktemp("fixed_pte")
    return model, export(model, "xnnpack", folder / "m.pte", ShapeSpec(TILE, TILE), overlap=OVERLAP)


@pytest.fixture(scope="session")
def dynamic_pte(tmp_path_factory):
    """``(model, ExportResult)``: an x2 MSM model as an XNNPACK .pte taking any multiple of 8 in 16..48."""
    from lmfn_edge.deployment import export
    from lmfn_edge.manifest import ShapeSpec

    model = tiny_model(2, channels=8, num_blocks=1, pattern="M", kernel_size=3)
    folder = tmp_path_factory.mktemp("dynamic_pte")
    return model, export(model, "xnnpack", folder / "d.pte", ShapeSpec.parse("16:48"), overlap=OVERLAP)


@pytest.fixture(scope="session")
def tiny_pt2(tmp_path_factory):
    """An int8 program file (.pt2) of a tiny x2 LKA model, PTQ-calibrated on one random crop."""
    from lmfn_edge.deployment import QuantizedInfo, save_quantized
    from quantization.ptq import ptq

    model = tiny_model(2, channels=8, num_blocks=1, pattern="L", kernel_size=3)
    program, _ = ptq(model, [torch.rand(1, 3, 16, 16)], tile=16)
    path = tmp_path_factory.mktemp("pt2") / "tiny.pt2"
    save_quantized(program, path, QuantizedInfo("ptq", model.config.to_dict(), 16))
    return path


# --- what the hostile-input tests (tests/hostile.py) hand every command ----------------------


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """A tiny x2 LKA weights file."""
    from lmfn_edge.model.weights import save_weights

    path = tmp_path_factory.mktemp("weights") / "x2.safetensors"
    save_weights(tiny_model(2, **TINY_L), path)
    return path


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    """A 28x20 noise photo."""
    from lmfn_edge.io import save_image

    path = tmp_path_factory.mktemp("photo") / "photo.png"
    rng = np.random.default_rng(0)
    save_image(path, rng.integers(0, 256, (20, 28, 3), dtype=np.uint8))
    return path
