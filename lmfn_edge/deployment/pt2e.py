"""The int8 graph of LMFN for XNNPACK: PT2E capture, quantizer and conversion, shared by QAT and PTQ.

``quantization/`` trains (QAT) or calibrates (PTQ) the prepared graph this module builds; the
SDK owns the graph itself, so that an int8 program can be rebuilt from stored weights and
quantization parameters without ``quantization/``.

The flow is torchao 0.18's PT2E (``prepare_pt2e`` / ``prepare_qat_pt2e`` -> ``convert_pt2e``)
with ExecuTorch's ``XNNPACKQuantizer``: int8 weights symmetric per output channel, int8
activations asymmetric per tensor (docs/quantization.md). What this module adds:

* Capture: the deploy form (the training form's ``grid_sample`` neither quantizes nor lowers)
  is exported with a dynamic batch and H/W as ``8 * Dim``: training needs batches, validation
  whole images, and with multiples of 8 MSM's pooling pads are provably empty.
* ``narrow`` becomes ``slice``: the quantizer lets ``slice`` share its input's qparams but not
  ``narrow`` (the same op), and an un-annotated slice between q/dq pairs of different params is
  rejected by the XNNPACK partitioner.
* Channel LayerNorm stays float. Its variance (with eps folded into the conv bias) spans
  flat regions (variance near 0) and edges in one int8 tensor: flat pixels round to 0 and
  ``rsqrt`` gives inf. Trained weights hit this on the first QAT step (the fake-quant
  observer turns the inf into a NaN scale). Float LayerNorm ops stay inside the XNNPACK
  subgraph, between dequantize and quantize nodes.
* The program handed to ``lmfn_edge.export`` is the converted (q/dq) model exported at one
  fixed tile, batch 1 (:func:`export_converted`), and saved with its LMFN config by
  :func:`lmfn_edge.deployment.save_quantized`, which owns the file format.
"""

from __future__ import annotations

import copy
import operator

import torch
from torch import nn

from ..manifest import DYNAMIC_MULTIPLE, MIN_DYNAMIC, padded_side
from ..manifest import MAX_SIDE as MAX_PROGRAM_SIDE
from ..model import LMFN
from ..model.deploy import ChannelLayerNormDeploy, to_deploy
from ..model.dsconv import DSConvDeploy, replicate_pad
from .quantized import QuantizedProgramError

__all__ = [
    "QuantizationError",
    "capture",
    "convert",
    "copy_prepared",
    "OnGrid",
    "export_converted",
    "fixed_parameter_names",
    "prepare",
    "quantizer",
]

MAX_BATCH = 1024
MAX_SIDE = 4096  # capture bound on H and W; nothing is planned at it (only guards)


class QuantizationError(QuantizedProgramError):
    """A quantization request that cannot be done as asked; one-line message."""


def pt2e_modules():
    """torchao's PT2E entry points and ExecuTorch's XNNPACK quantizer, with a clear error."""
    try:
        from executorch.backends.xnnpack.quantizer import xnnpack_quantizer as xq
        from torchao.quantization import pt2e
        from torchao.quantization.pt2e import quantize_pt2e
    except ImportError as exc:
        raise QuantizationError(f"quantization needs executorch==1.5.1 and torchao 0.18 ({exc})") from None
    return xq, pt2e, quantize_pt2e


def quantizer(qat: bool):
    """``XNNPACKQuantizer``: per-channel int8 weights, per-tensor int8 activations."""
    xq, _, _ = pt2e_modules()
    q = xq.XNNPACKQuantizer().set_global(xq.get_symmetric_quantization_config(is_per_channel=True, is_qat=qat))
    # See the module docstring: LayerNorm's variance must not round to zero.
    return q.set_module_type(ChannelLayerNormDeploy, None)


def narrow_to_slice(gm: torch.fx.GraphModule) -> int:
    """Rewrite ``aten.narrow(x, d, start, n)`` as ``aten.slice(x, d, start, start + n)``."""
    count = 0
    for node in gm.graph.nodes:
        if node.op != "call_function" or node.target != torch.ops.aten.narrow.default:
            continue
        x, dim, start, length = node.args
        if isinstance(start, torch.fx.Node) or isinstance(length, torch.fx.Node):
            with gm.graph.inserting_before(node):
                end = gm.graph.call_function(operator.add, (start, length))
        else:
            end = start + length
        node.target, node.args = torch.ops.aten.slice.Tensor, (x, dim, start, end)
        count += 1
    gm.recompile()
    return count


def fixed_parameter_names(deployed: LMFN) -> set[str]:
    """Deploy-form parameters that encode fixed operations, never trained.

    LayerNorm's mean and variance convs (all but its affine part) and DSConv's bilinear-hat pair
    conv re-express parameter-free operations; keeping them fixed keeps the fine-tuned network
    an LMFN (and its LayerNorm a LayerNorm, whose variance stays positive). The other fixed
    operations (unfold, skew, upsampling, pixel shuffle) hold their constants in buffers.
    """

    def names(prefix: str, module: nn.Module) -> set[str]:
        return {f"{prefix}.{n}".lstrip(".") for n, _ in module.named_parameters()}

    fixed = set()
    for prefix, module in deployed.named_modules():
        if isinstance(module, ChannelLayerNormDeploy):
            fixed |= names(prefix, module) - names(f"{prefix}.affine", module.affine)
        elif isinstance(module, DSConvDeploy):
            fixed |= names(f"{prefix}.pair_conv", module.pair_conv)
    return fixed


def capture(model: LMFN, example_batch: int = 2, example_side: int = 16) -> torch.fx.GraphModule:
    """The deploy form as a graph module taking any batch and H/W multiples of 8 (>= 16).

    Parameters keep their deploy-form names; the fixed ones (:func:`fixed_parameter_names`) have
    ``requires_grad=False``, every other one ``True``.
    """
    deployed = to_deploy(model)
    fixed = fixed_parameter_names(deployed)
    x = torch.rand(example_batch, 3, example_side, example_side)
    side = (MIN_DYNAMIC // DYNAMIC_MULTIPLE, MAX_SIDE // DYNAMIC_MULTIPLE)
    dims = {
        0: torch.export.Dim("batch", min=1, max=MAX_BATCH),
        2: DYNAMIC_MULTIPLE * torch.export.Dim("h8", min=side[0], max=side[1]),
        3: DYNAMIC_MULTIPLE * torch.export.Dim("w8", min=side[0], max=side[1]),
    }
    gm = torch.export.export(deployed, (x,), dynamic_shapes={"x": dims}).module()
    narrow_to_slice(gm)
    for name, p in gm.named_parameters():
        p.requires_grad_(name not in fixed)
    return gm


def prepare(model: LMFN, qat: bool) -> torch.fx.GraphModule:
    """Capture ``model`` and insert fake-quant (QAT) or observers (PTQ).

    ``.train()`` and ``.eval()`` work on the result (they move the graph between modes).
    """
    _, pt2e, quantize_pt2e = pt2e_modules()
    gm = capture(model)
    trainable = {n: p.requires_grad for n, p in gm.named_parameters()}
    prepared = (quantize_pt2e.prepare_qat_pt2e if qat else quantize_pt2e.prepare_pt2e)(gm, quantizer(qat))
    for name, p in prepared.named_parameters():
        p.requires_grad_(trainable.get(name, False))
    pt2e.allow_exported_model_train_eval(prepared)
    return prepared


def copy_prepared(prepared: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """A deep copy whose ``.train()``/``.eval()`` still move the graph between modes."""
    _, pt2e, _ = pt2e_modules()
    return pt2e.allow_exported_model_train_eval(copy.deepcopy(prepared))


def convert(prepared: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """The reference quantized (q/dq) model of a prepared one; ``prepared`` is left as is."""
    _, pt2e, quantize_pt2e = pt2e_modules()
    model = copy_prepared(prepared)
    model.eval()
    return pt2e.allow_exported_model_train_eval(quantize_pt2e.convert_pt2e(model))


class OnGrid(nn.Module):
    """A converted graph at a fixed LR size off its grid (a 720p x4 frame is 180x320).

    The input is replicate-padded at the bottom and right up to :func:`lmfn_edge.manifest.padded_side` (the delegable
    slices-and-concat of :func:`~lmfn_edge.model.dsconv.replicate_pad`), the graph runs at the
    grid size, and the output is cropped back to ``scale x`` the input. The padded rows and
    columns are what the tiler feeds a program at an image's edge; docs/quantization.md
    "Int8 shapes" measures what they change against the float model at the same size.
    """

    def __init__(self, converted: torch.fx.GraphModule, height: int, width: int) -> None:
        super().__init__()
        self.converted = converted
        self.pad = (padded_side(height) - height, padded_side(width) - width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        padded = replicate_pad(replicate_pad(x, 2, 0, self.pad[0]), 3, 0, self.pad[1])
        y = self.converted(padded)
        r = y.shape[2] // padded.shape[2]
        if self.pad[0]:
            y = y.narrow(2, 0, r * h)
        if self.pad[1]:
            y = y.narrow(3, 0, r * w)
        return y


def export_converted(converted: torch.fx.GraphModule, height: int, width: int | None = None) -> torch.export.ExportedProgram:
    """``torch.export`` of a converted model at one ``height x width`` LR input (square when
    ``width`` is omitted), batch 1: what ``export --precision int8`` lowers and
    :func:`lmfn_edge.deployment.save_quantized` writes. Sides off the captured graph's grid
    (not multiples of 8, or under 16) run through :class:`OnGrid`; on-grid sides export the
    converted graph as it is."""
    width = height if width is None else width
    for side in (height, width):
        if isinstance(side, bool) or not isinstance(side, int) or not 1 <= side <= MAX_PROGRAM_SIDE:
            raise QuantizationError(f"an int8 program's sides are from 1 to {MAX_PROGRAM_SIDE}, got {side!r}")
    module = converted if (padded_side(height), padded_side(width)) == (height, width) else OnGrid(converted, height, width)
    return torch.export.export(module, (torch.rand(1, 3, height, width),))
