"""Which LMFN module each XNNPACK node of a lowered program came from (the sidecar's
``delegation.modules``; ``bench --profile`` reads it to name the network's parts).

ExecuTorch 1.5.1's XNNPACK delegate returns an empty debug-handle map, so an ETRecord cannot see
inside it (docs/deployment.md, "Per-operator profile"). The delegate blob itself does keep, in
each serialized node, the debug handle of the edge-graph node it was built from, and the edge
graph keeps ``torch.export``'s ``nn_module_stack``. Right after lowering, this module reads the
nodes of each XNNPACK blob in order and writes for each one its kind and the innermost LMFN module
(a class of :mod:`lmfn_edge.model`, or a direct child of the network such as ``fuse``; not a
``torch.nn`` leaf inside a module) its debug handle belongs to:

.. code-block:: json

    {"version": 1,
     "parts": ["LMFN", "HeadDeploy head", "BuildingModule blocks.0", ...],
     "kinds": ["XNNConv2d", "XNNGelu", ...],
     "nodes": ["0:0 1:3 2 ..."]}

``nodes`` has one string per XNNPACK delegate, in program order, a ``kind:part`` pair of indices
per node (13-15 kB in all for the x4 model). ExecuTorch adds nodes of its own: the NCHW/NHWC
transposes between operators that need different layouts, which stay without ``:part``, and the
later pieces of a concatenation of over five inputs, which belong to the node before them. A
quantize or dequantize node, which ``torch.export`` places in no module, belongs to the module of
the value it converts. ``parts`` lists every module that holds a node, and its ancestors, as
``"Class path"`` (the root is ``"LMFN"``), so that the profile can sum by block as well as by
module. The bytes parsed here are the ones this process has just produced; nothing reads a
user's .pte this way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

__all__ = ["MAP_VERSION", "ModuleMap", "ModuleMapError", "module_map", "read_module_map", "xnode_kinds"]

MAP_VERSION = 1
MODEL_PACKAGE = "lmfn_edge.model."


@lru_cache(maxsize=1)
def _union_kinds() -> tuple[str, ...]:
    """The node kinds of the installed XNNPACK schema, in union order (type 1 is the first)."""
    from executorch.backends.xnnpack import serialization

    schema = re.sub(r"//[^\n]*", "", (Path(next(iter(serialization.__path__))) / "schema.fbs").read_text())
    body = re.search(r"union\s+XNodeUnion\s*\{(.*?)\}", schema, re.S)
    if body is None:
        raise RuntimeError("XNNPACK's schema.fbs has no XNodeUnion")
    return tuple(m.group(1) for m in re.finditer(r"(\w+)\s*(?::\s*\w+)?\s*,?", body.group(1)))


def xnode_kinds(processed: bytes) -> list[tuple[str, int]]:
    """``(kind, debug_handle)`` of each node in an XNNPACK delegate blob, in execution order."""
    import flatbuffers
    from executorch.backends.xnnpack.serialization.xnnpack_graph_serialize import XNNHeader
    from flatbuffers.number_types import Uint8Flags, Uint32Flags
    from flatbuffers.table import Table

    header = XNNHeader.from_bytes(processed[: XNNHeader.EXPECTED_LENGTH])
    buf = bytearray(processed[header.flatbuffer_offset: header.flatbuffer_offset + header.flatbuffer_size])
    root = Table(buf, flatbuffers.encode.Get(flatbuffers.packer.uoffset, buf, 0))
    kinds = _union_kinds()
    # XNNGraph: version (vtable slot 0), xnodes (slot 1). XNode: the union's type (slot 0) and
    # value (slot 1), debug_handle (slot 2). A vtable entry sits at 4 + 2 * slot.
    field = root.Offset(6)
    if not field:
        return []
    start, count = root.Vector(field), root.VectorLen(field)
    out = []
    for i in range(count):
        node = Table(buf, root.Indirect(start + 4 * i))
        kind = node.Offset(4)
        handle = node.Offset(8)
        index = node.Get(Uint8Flags, node.Pos + kind) if kind else 0
        out.append((kinds[index - 1] if 0 < index <= len(kinds) else "unknown",
                    node.Get(Uint32Flags, node.Pos + handle) if handle else 0))
    return out


def _lmfn_stack(node: torch.fx.Node) -> list[tuple[str, str]]:
    """``(path, class name)`` of the modules around ``node`` that a profile names, outermost
    first: the LMFN modules (the root's path is ``""``) and the root's own children (``fuse``, a
    ``Conv2d``), but not the ``torch.nn`` leaves inside LMFN's modules."""
    stack = node.meta.get("nn_module_stack") or {}
    out = []
    for path, cls in stack.values():
        name = cls if isinstance(cls, str) else f"{cls.__module__}.{cls.__qualname__}"
        path = _plain_path(path)
        if name.startswith(MODEL_PACKAGE) or (path and "." not in path):
            out.append((path, name.rsplit(".", 1)[-1]))
    return out


def _plain_path(path: str) -> str:
    path = re.sub(r"^L\['self'\]\.?", "", path)
    return re.sub(r"\[(\d+)\]", r".\1", path).strip(".")


def module_map(graph_module: torch.fx.GraphModule) -> dict | None:
    """The map described in the module docstring for an edge graph after lowering, or ``None``
    when it has no XNNPACK delegate."""
    parts: dict[str, int] = {}  # module path -> index into labels
    labels: list[str] = []  # "Class path", as the sidecar stores them
    kinds: dict[str, int] = {}
    delegates = []
    for node in graph_module.graph.nodes:
        if node.op != "get_attr" or not str(node.target).startswith("lowered_module"):
            continue
        lowered = getattr(graph_module, node.target)
        if lowered.backend_id != "XnnpackBackend":
            continue
        owner: dict[torch.fx.Node, int] = {}
        for inner in lowered.original_module.graph.nodes:
            stack = _lmfn_stack(inner) if inner.op == "call_function" else []
            for path, cls in stack:
                if path not in parts:
                    parts[path] = len(labels)
                    labels.append(f"{cls} {path}" if path else cls)
            if stack:
                owner[inner] = parts[stack[-1][0]]
        # q/dq nodes: the module of the value they convert, or of its user (an input's quantize
        # reaches its module through the dequantize after it), until no node is left to place.
        placed = True
        while placed:
            placed = False
            for inner in lowered.original_module.graph.nodes:
                if inner.op == "call_function" and inner not in owner:
                    near = [a for a in inner.args if isinstance(a, torch.fx.Node) and a in owner]
                    near = near or [u for u in inner.users if u in owner]
                    if near:
                        owner[inner], placed = owner[near[0]], True
        by_handle = {n.meta["debug_handle"]: part for n, part in owner.items()
                     if isinstance(n.meta.get("debug_handle"), int)}
        tokens, previous = [], None
        for kind, handle in xnode_kinds(lowered.processed_bytes):
            k = kinds.setdefault(kind, len(kinds))
            part = by_handle.get(handle)
            if part is None and kind != "XNNStaticTranspose":
                part = previous  # the rest of a cat of over five inputs, split by ExecuTorch
            tokens.append(str(k) if part is None else f"{k}:{part}")
            previous = part
        delegates.append(" ".join(tokens))
    if not delegates:
        return None
    return {"version": MAP_VERSION, "parts": labels, "kinds": list(kinds), "nodes": delegates}


class ModuleMapError(ValueError):
    """A sidecar's ``delegation.modules`` that is not the format written above."""


@dataclass(frozen=True)
class ModuleMap:
    """A validated ``delegation.modules``: per delegate, each node's kind and LMFN module."""

    parts: tuple[tuple[str, str], ...]  # (path, class name); the root's path is ""
    delegates: tuple[tuple[tuple[str, int], ...], ...]  # per node: (kind, index into parts or -1)

    def part(self, index: int) -> tuple[str, str] | None:
        return self.parts[index] if index >= 0 else None


_PART = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?: ([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*))?")
_KIND = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_NODE = re.compile(r"(\d+)(?::(\d+))?")


def read_module_map(data: object) -> ModuleMap:
    """Validate ``delegation.modules`` field by field (its size is bounded by the sidecar's)."""

    def strings(name: str, pattern: re.Pattern, like: str) -> list[str]:
        value = data.get(name)
        if not isinstance(value, list) or not all(isinstance(v, str) and pattern.fullmatch(v) for v in value):
            raise ModuleMapError(f"modules.{name} must be a list of strings like {like}")
        return value

    if not isinstance(data, dict):
        raise ModuleMapError(f"modules must be an object, got {type(data).__name__}")
    if data.get("version") != MAP_VERSION or isinstance(data.get("version"), bool):
        raise ModuleMapError(f"modules.version must be {MAP_VERSION}, got {data.get('version')!r}")
    parts = tuple((m.group(2) or "", m.group(1)) for m in (_PART.fullmatch(p) for p in strings("parts", _PART, "'DSConvDeploy blocks.0.cell'")))
    kinds = strings("kinds", _KIND, "'XNNConv2d'")
    nodes = data.get("nodes")
    if not isinstance(nodes, list) or not all(isinstance(d, str) for d in nodes):
        raise ModuleMapError("modules.nodes must be a list of strings, one per delegate")
    delegates = []
    for text in nodes:
        entries = []
        for token in text.split():
            match = _NODE.fullmatch(token)
            kind = int(match.group(1)) if match else len(kinds)
            part = int(match.group(2)) if match and match.group(2) is not None else -1
            if kind >= len(kinds) or part >= len(parts):
                raise ModuleMapError(f"modules.nodes has an entry {token[:20]!r} that names no kind or part")
            entries.append((kinds[kind], part))
        delegates.append(tuple(entries))
    return ModuleMap(parts, tuple(delegates))
