"""Int8 variants: which parts of LMFN compute in int8, and with which activation ranges.

An LMFN graph is cut into *groups*, the network's top-level parts in the order data flows:
``head``, ``blocks.0`` ... ``blocks.N-1``, ``trunk`` (the concatenation of the block outputs,
the fuse conv's GELU and the long skip: the ops that belong to no child module), ``fuse``,
``tail``, ``upsample`` and ``shuffle``. A variant says how the graph is quantized and which
groups stay fp32 (:data:`VARIANTS`, docs/quantization.md "Int8 variants"):

* ``int8`` -- static W8A8 from the QAT parameters the package embeds: every activation on a
  grid fixed at QAT time.
* ``int8-mixed`` -- the same program with a few groups computing in fp32 (*fp32 islands*):
  :func:`float_islands` takes the observers off every edge into and inside those groups (their
  convs get the QAT-tuned float weights); edges out of an island are quantized onto the grid
  QAT fixed for them. Same parameters, so nothing to retrain.
* ``int8-dynamic`` -- dynamic-range int8 on the regular convs (XNNPACK's qd8-f32-qc8w
  convolution): weights int8 per output channel, each conv input quantized per run from its
  actual range, outputs fp32; everything else (depthwise convs, GELU, products, LayerNorm)
  fp32. Built from the float weights alone (no calibration, no QAT), with the groups the
  package lists kept fp32.

Which groups a variant keeps fp32 at each scale is data, written by ``python -m
quantization.sensitivity`` from a measured per-group scan (``lmfn_edge/data/int8_variants.json``).
"""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path

import torch

from ..errors import UsageError
from ..model import LMFNConfig

__all__ = ["VARIANTS", "VariantError", "convert_islands", "dynamic_converted", "float_islands", "groups",
           "node_group", "read_variants", "variant_groups"]

STATIC, MIXED, DYNAMIC = "int8", "int8-mixed", "int8-dynamic"
VARIANTS = {  # precision -> (activation ranges, needs the QAT parameters)
    STATIC: ("static", True),
    MIXED: ("static", True),
    DYNAMIC: ("dynamic", False),
}
# What ``export --android`` ships (docs/quantization.md "The table that decides"): the fastest
# variant within 0.1 dB of float at every scale on both held-out sets and faster than the fp32
# .pte; None (fp32) when no variant is. None since 2026-12-07: static int8 loses up to 4.4 dB
# on the corpus's held-out photos, and int8-dynamic, within 0.06 dB at x3 and x4 but 0.42 at
# x2, ran slower than the fp32 .pte on the measured (AVX2) CPU.
ANDROID_DEFAULT: str | None = None
TRUNK = "trunk"
VARIANTS_PATH = Path(str(resources.files("lmfn_edge") / "data" / "int8_variants.json"))
MAX_VARIANTS_BYTES = 1 << 16


class VariantError(UsageError):
    """An int8 variant that cannot be built as asked; one-line message."""


def groups(config: LMFNConfig) -> tuple[str, ...]:
    """The groups of an LMFN of ``config``, in the order data flows through them."""
    return ("head", *(f"blocks.{i}" for i in range(config.num_blocks)), "fuse", TRUNK, "tail", "upsample", "shuffle")


def node_group(node: torch.fx.Node) -> str | None:
    """The group a captured graph's node computes for, from its module stack; ``None`` for the
    inserted quantize/dequantize nodes and the graph's plumbing (placeholders, constants)."""
    if node.op != "call_function" or _is_qdq(node) or not isinstance(node.meta.get("val"), torch.Tensor):
        return None  # sizes and other symbolic plumbing compute nothing
    stack = node.meta.get("nn_module_stack") or {}
    paths = [path for path, _ in stack.values() if path and not path.startswith("_")]
    if not paths:
        return TRUNK
    parts = paths[0].split(".")
    return ".".join(parts[:2]) if parts[0] == "blocks" else parts[0]


def _is_qdq(node: torch.fx.Node) -> bool:
    return node.op == "call_function" and "quantized_decomposed" in str(node.target)


def _is_observer(node: torch.fx.Node) -> bool:
    """A prepared graph's observer or fake-quant (PT2E names them ``activation_post_process_N``)."""
    return node.op == "call_module" and str(node.target).startswith("activation_post_process")


def float_islands(prepared: torch.fx.GraphModule, keep: tuple[str, ...] | list[str]) -> torch.fx.GraphModule:
    """A copy of a prepared (observed or fake-quantized) graph in which the groups ``keep`` are fp32.

    Every input of an island's op that passes through an observer (an activation, or a weight)
    is given the observer's input instead: the island computes with the float weights (for QAT
    parameters, the QAT-tuned ones) on float activations. The other consumers keep their
    observers, so ops outside the islands are quantized as before, and values leaving an island
    for another group are quantized on the grid they had; the program's output is fp32 when the
    group that makes it is an island. Observers left with no consumer are removed, so
    :func:`~lmfn_edge.deployment.pt2e.convert` turns the result into a q/dq graph with no q/dq
    pair inside an island. ``prepared`` is left as is.
    """
    from .pt2e import copy_prepared

    gm = copy_prepared(prepared)
    keep = set(keep)
    for node in list(gm.graph.nodes):
        if node.op == "output":
            inside = [a for a in node.all_input_nodes if _is_observer(a) and node_group(a.args[0]) in keep]
        elif node.op == "call_function" and not isinstance(node.meta.get("val"), torch.Tensor):
            inside = [a for a in node.all_input_nodes if _is_observer(a)]  # a size: the same either way
        else:
            inside = [a for a in node.all_input_nodes if _is_observer(a)] if node_group(node) in keep else []
        for arg in inside:
            node.replace_input_with(arg, arg.args[0])
        if node_group(node) in keep:  # no longer quantized: convert must not look for its q/dq
            node.meta.pop("quantization_annotation", None)
    gm.graph.eliminate_dead_code()
    gm.recompile()
    return gm


def convert_islands(prepared: torch.fx.GraphModule, keep: tuple[str, ...] | list[str] = ()) -> torch.fx.GraphModule:
    """The q/dq graph of a statically ``prepared`` graph with the groups ``keep`` fp32
    (:func:`float_islands`). A dynamic graph takes its islands when it is annotated
    (:func:`dynamic_converted`)."""
    from .pt2e import convert

    return convert(float_islands(prepared, keep) if keep else prepared)


def dynamic_converted(model, keep: tuple[str, ...] | list[str] = (), captured: torch.fx.GraphModule | None = None
                      ) -> torch.fx.GraphModule:
    """The dynamic-range int8 (q/dq) graph of a float LMFN (any batch, H/W multiples of 8):
    every regular conv outside LayerNorm and the groups ``keep`` quantized for qd8 (int8 weights
    per output channel, inputs quantized per run from their own range). ``captured``
    (:func:`~lmfn_edge.deployment.pt2e.capture` of ``model``, left as is) saves the capture when
    one model is converted with several ``keep``.

    The prepared graph is observed once, so that the weight observers see the weights (dynamic
    activations observe nothing: the input does not matter), and converted where it stands: a
    deep copy of it would keep, in its nodes' quantization annotations, the original graph's
    nodes, and torchao 0.18's conversion then searches the original graph for a dynamic
    quantization it never finds (exponentially long, on LMFN's reconverging DSConv graph).
    """
    from ..model.deploy import ChannelLayerNormDeploy
    from .pt2e import capture, pt2e_modules

    xq, pt2e, quantize_pt2e = pt2e_modules()
    config = xq.get_symmetric_quantization_config(is_per_channel=True, is_dynamic=True)
    unknown = sorted(set(keep) - set(groups(model.config)))
    if unknown:
        raise VariantError(f"unknown group(s) {', '.join(unknown)}; groups are {', '.join(groups(model.config))}")
    keep = set(keep)
    quantizer = xq.XNNPACKQuantizer().set_global(config).set_module_type(ChannelLayerNormDeploy, None)
    quantizer.set_filter_function(lambda node: node_group(node) not in keep)
    graph = copy.deepcopy(captured) if captured is not None else capture(model)
    prepared = quantize_pt2e.prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        prepared(torch.zeros(1, 3, 16, 16))
    return pt2e.allow_exported_model_train_eval(quantize_pt2e.convert_pt2e(prepared))


def read_variants(path: str | Path = VARIANTS_PATH) -> dict:
    """The package's variant table: ``{"scales": {"2": {precision: {"fp32_groups": [...]}}}, ...}``."""
    path = Path(path)
    if path.stat().st_size > MAX_VARIANTS_BYTES:
        raise VariantError(f"{path} is larger than {MAX_VARIANTS_BYTES} bytes")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise VariantError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("scales"), dict):
        raise VariantError(f"{path} has no 'scales' object")
    return data


def variant_groups(precision: str, config: LMFNConfig, path: str | Path = VARIANTS_PATH) -> tuple[str, ...]:
    """The groups ``precision`` keeps fp32 for an LMFN of ``config``: none for ``int8``; for the
    others what the package's table lists at its scale.

    The table was scanned on the shipped architecture (``LMFNConfig(scale=s)``), so its names are
    validated against that one's groups; for another architecture (``--weights`` of a smaller
    LMFN) the listed groups it does not have (``blocks.7`` of a 4-block LMFN) are left out.
    """
    if precision not in VARIANTS:
        raise VariantError(f"unknown int8 variant {precision!r}; variants are {', '.join(VARIANTS)}")
    if precision == STATIC:
        return ()
    entry = read_variants(path)["scales"].get(str(config.scale), {}).get(precision)
    if entry is None:
        return ()
    names = entry.get("fp32_groups") if isinstance(entry, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise VariantError(f"{path}: x{config.scale} {precision}: fp32_groups must be a list of group names")
    unknown = sorted(set(names) - set(groups(LMFNConfig(scale=config.scale))))
    if unknown:
        raise VariantError(f"{path}: x{config.scale} {precision}: unknown group(s) {', '.join(unknown)}")
    present = set(groups(config))
    return tuple(n for n in names if n in present)
