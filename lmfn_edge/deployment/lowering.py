"""Lowering an exported LMFN program to each backend, in ExecuTorch's three visible steps.

``torch.export.export`` -> ``to_edge_transform_and_lower`` (with a partitioner) ->
``to_executorch`` for .pte files; ``coremltools.convert`` on the same ``ExportedProgram`` (with
``run_decompositions({})``, the path coremltools 9 supports) for .mlpackage files. Heavy
packages are imported inside the functions, so ``import lmfn_edge`` stays cheap.
"""

from __future__ import annotations

import inspect
import os
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import torch

from .. import console, interrupts
from ..errors import UsageError

# Graph nodes that are bookkeeping rather than compute when left outside a delegate.
NON_COMPUTE_OPS = {"getitem", "_to_dim_order_copy", "_clone_dim_order", "alias_copy", "sym_size"}


class ExportError(UsageError):
    """An export that cannot be done as asked (missing package, unsupported combination)."""


def _require(module: str, extra: str):
    import importlib

    try:
        imported = importlib.import_module(module)
    except ImportError as exc:
        raise ExportError(f"{module} is required for this target ({exc}); install {extra}") from None
    interrupts.check()  # coremltools' imports swallow a Ctrl-C that comes meanwhile
    return imported


@dataclass
class Delegation:
    """What a partitioner took: the numbers the acceptance tests and sidecars report."""

    backend: str
    subgraphs: int
    delegated_nodes: int
    non_delegated_nodes: int
    non_delegated_ops: dict[str, int] = field(default_factory=dict)
    # XNNPACK only: the LMFN module of each delegated node (lmfn_edge.deployment.xnnpack_map).
    modules: dict | None = None

    @property
    def non_delegated_compute_ops(self) -> dict[str, int]:
        return {op: n for op, n in self.non_delegated_ops.items() if not _is_bookkeeping(op)}

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["modules"] is None:
            del d["modules"]
        d["non_delegated_compute_ops"] = self.non_delegated_compute_ops
        return d


def _is_bookkeeping(op: str) -> bool:
    return any(op == name or op.startswith(f"aten_{name}") or op.startswith(name) for name in NON_COMPUTE_OPS)


def delegation_summary(graph_module: torch.fx.GraphModule, backend: str) -> Delegation:
    """Count delegated subgraphs and list the ops left outside them."""
    subgraphs = 0
    delegated = 0
    left: Counter[str] = Counter()
    for node in graph_module.graph.nodes:
        if node.op == "get_attr" and str(node.target).startswith("lowered_module"):
            subgraphs += 1
            lowered = getattr(graph_module, node.target)
            delegated += sum(
                1 for n in lowered.original_module.graph.nodes if n.op == "call_function"
            )
        elif node.op == "call_function":
            if "executorch_call_delegate" in str(node.target):
                continue
            name = getattr(node.target, "__name__", str(node.target))
            left[".".join(name.split(".")[:2]) if name.startswith("aten") else name] += 1
    modules = None
    if backend == "xnnpack":
        from .xnnpack_map import module_map

        modules = module_map(graph_module)
    return Delegation(backend, subgraphs, delegated, sum(left.values()), dict(sorted(left.items())), modules)


@contextmanager
def one_level_provenance():
    """Keep only one level of torch.fx node provenance while lowering.

    Every graph pass of the edge and XNNPACK pipelines (about sixty) records each new node's
    source in ``node.meta["from_node"]`` as a ``torch.fx.traceback.NodeSource`` that deep-copies
    the source's own history, so the chains grow with every pass and copying them takes about a
    fifth of the lowering time of the full model. Inside this context a new ``NodeSource`` keeps
    its direct source but not that source's history. The program is the same (the tests compare
    delegation and outputs); ExecuTorch's debug handles then group nodes by their last source
    rather than the first, which only matters for mapping profiler events back to
    ``torch.export`` nodes: set ``LMFN_EDGE_FULL_PROVENANCE=1`` to keep the full history.
    Does nothing if torch's ``NodeSource`` is not the 2.13 one this was written against.
    """
    from torch.fx import traceback as fx_traceback

    source = getattr(fx_traceback, "NodeSource", None)
    init = getattr(source, "__init__", None)
    known = init is not None and list(inspect.signature(init).parameters) == ["self", "node", "pass_name", "action"]
    if os.environ.get("LMFN_EDGE_FULL_PROVENANCE") or not known:
        yield
        return

    def init_without_history(self, node, pass_name="", action=None):
        history = node.meta.pop("from_node", None) if node is not None else None
        try:
            init(self, node, pass_name, action)
        finally:
            if history is not None:
                node.meta["from_node"] = history

    source.__init__ = init_without_history
    try:
        yield
    finally:
        source.__init__ = init


@contextmanager
def one_intra_op_thread():
    """Run torch ops on one thread while lowering.

    Lowering is single-threaded Python over many tiny tensor ops (fake-tensor propagation,
    constant folding); waking a second OpenMP thread for each costs more than it saves (measured
    in docs/deployment.md, "Graph-level facts": export and lowering of the x4 at 64x64).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def merge_covering_partitions(result) -> None:
    """Make one partition of a ``PartitionResult`` whose partitions together take every compute
    node of the graph.

    XNNPACK's partitioner grows partitions around node groups that must stay together (each
    dynamically quantized conv with its ``choose_qparams`` / quantize / dequantize chain), and on
    LMFN's dynamic-range graph it stops growing one and starts another where merging would be
    safe: the two interleave, and the program ran as two delegate calls joined by ``getitem``
    (measured on ExecuTorch 1.5.1; docs/quantization.md "Int8 variants"). When every
    ``call_function`` node is tagged, the union is the whole graph, which cannot form a cycle
    with anything outside it, so one tag is as valid as several. Otherwise nothing changes.
    """
    graph = result.tagged_exported_program.graph
    nodes = [n for n in graph.nodes if n.op == "call_function"]
    tags = {n.meta.get("delegation_tag") for n in nodes}
    if None in tags or len(tags) < 2:
        return
    keep = min(tags)
    for node in graph.nodes:
        if "delegation_tag" in node.meta:
            node.meta["delegation_tag"] = keep
    for tag in [t for t in result.partition_tags if t != keep]:
        del result.partition_tags[tag]


def _one_subgraph_xnnpack_partitioner():
    """ExecuTorch's ``XnnpackPartitioner`` followed by :func:`merge_covering_partitions`."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

    class OneSubgraphXnnpackPartitioner(XnnpackPartitioner):
        def partition(self, exported_program):
            result = super().partition(exported_program)
            merge_covering_partitions(result)
            return result

    return OneSubgraphXnnpackPartitioner()


def lower_to_executorch(ep: torch.export.ExportedProgram, backend: str):
    """Lower to a .pte program. ``backend``: ``xnnpack``, ``portable`` or ``coreml``.

    Returns:
        ``(ExecutorchProgramManager, Delegation)``.
    """
    exir = _require("executorch.exir", "executorch==1.5.1")
    partitioners = []
    if backend == "xnnpack":
        partitioners = [_one_subgraph_xnnpack_partitioner()]
    elif backend == "coreml":
        _require("coremltools", "executorch==1.5.1 (brings coremltools 9.0)")
        import coremltools as ct
        from executorch.backends.apple.coreml.compiler import CoreMLBackend
        from executorch.backends.apple.coreml.partition import CoreMLPartitioner

        specs = CoreMLBackend.generate_compile_specs(
            minimum_deployment_target=ct.target.iOS17, compute_precision=ct.precision.FLOAT16
        )
        partitioners = [CoreMLPartitioner(compile_specs=specs)]
    elif backend != "portable":
        raise ExportError(f"unknown ExecuTorch backend {backend!r}")
    with one_level_provenance(), one_intra_op_thread(), console.third_party():
        edge = exir.to_edge_transform_and_lower(ep, partitioner=partitioners)
        summary = delegation_summary(edge.exported_program().graph_module, backend)
        return edge.to_executorch(), summary


def convert_coreml(
    ep: torch.export.ExportedProgram,
    precision: str,
    input_name: str = "lr",
    output_name: str = "sr",
):
    """Convert to a Core ML ML program (iOS 17+), fp32 input and output in every precision.

    The input and output stay float32 tensors in [0, 1] so the program is a drop-in for the
    .pte; with ``fp16`` the compute runs in half precision (what the Neural Engine executes).
    """
    _require("coremltools", "executorch==1.5.1 (brings coremltools 9.0)")
    import coremltools as ct
    import numpy as np

    if precision not in ("fp16", "fp32", "int8"):
        raise ExportError(f"Core ML supports fp16, fp32 and int8 here, not {precision!r}")
    # int8: a converted q/dq program keeps its quantize/dequantize pairs (weights become
    # constexpr_affine_dequantize), so W8A8 runs with fp32 compute between them.
    compute = ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32
    with console.third_party():  # coremltools' progress bars
        return ct.convert(
            ep.run_decompositions({}),
            convert_to="mlprogram",
            minimum_deployment_target=ct.target.iOS17,
            compute_precision=compute,
            inputs=[ct.TensorType(name=input_name, dtype=np.float32)],
            outputs=[ct.TensorType(name=output_name, dtype=np.float32)],
            skip_model_load=True,  # loading needs macOS; conversion does not
        )
