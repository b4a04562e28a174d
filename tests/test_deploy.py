"""The deploy form: same outputs as the training form, and only backend-friendly ops."""

import pytest
import torch

from helpers import bent_model
from lmfn_edge.model import LMFN
from lmfn_edge.model.deploy import (
    HeadDeploy,
    PixelShuffleDeploy,
    is_deployed,
    to_deploy,
)
from lmfn_edge.registry import scale_of


def _perturbed(name, seed=0, **overrides):
    """A model whose DSConv offsets and other weights are non-trivial (untrained DSConvs are
    straight lines, which would hide errors in the hat-sum)."""
    return bent_model(scale_of(name), seed, offset_bias_std=0.3, jitter=0.02, **overrides)


@pytest.mark.parametrize("name", ["lmfn_x2", "lmfn_x3", "lmfn_x4"])
def test_full_model_parity(name):
    model = _perturbed(name)
    deployed = to_deploy(model)
    for size in [(37, 51), (1, 1), (12, 9)]:
        x = torch.rand(2, 3, *size)
        with torch.no_grad():
            diff = (deployed(x) - model(x)).abs().max().item()
        assert diff <= 1e-5, (size, diff)


def test_deploy_form_contains_no_rejected_ops():
    deployed = to_deploy(_perturbed("lmfn_x2", channels=16, num_blocks=3, pattern="LMI", kernel_size=5))
    ep = torch.export.export(deployed, (torch.rand(1, 3, 20, 20),))
    ops = {str(n.target) for n in ep.run_decompositions().graph.nodes if n.op == "call_function"}
    banned = ("grid_sampler", "layer_norm", "upsample", "adaptive", "pixel_shuffle", "repeat",
              "split", "index", "gather", "expand")
    assert not [op for op in ops if any(b in op for b in banned)], ops


def test_to_deploy_leaves_model_untouched_and_is_idempotent():
    model = _perturbed("lmfn_x2", channels=16, num_blocks=2, pattern="MI", kernel_size=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    deployed = to_deploy(model)
    # A pure swap of child modules: the same class, its own head and shuffle twins.
    assert type(deployed) is LMFN and not deployed.training and is_deployed(deployed) and not is_deployed(model)
    assert isinstance(deployed.head, HeadDeploy) and isinstance(deployed.shuffle, PixelShuffleDeploy)
    assert deployed.config == model.config
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    again = to_deploy(deployed)
    x = torch.rand(1, 3, 9, 7)
    with torch.no_grad():
        assert torch.equal(again(x), deployed(x))
    with pytest.raises(TypeError):
        to_deploy(torch.nn.Conv2d(3, 3, 1))
