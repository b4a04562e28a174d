"""The quantized-program file (.pt2): an int8 LMFN program with what it records of its making.

``quantization/`` (QAT, PTQ) writes one with :func:`save_quantized`; ``python -m
lmfn_edge.export --quantized`` reads it with :func:`load_quantized`. The file is
``torch.export.save`` of the converted (q/dq) program, exported at one fixed tile with batch 1,
plus ``extra/lmfn_config.json`` (:class:`QuantizedInfo`).

**Loading executes nothing from the file.** A ``.pt2`` archive can carry code in several
places that ``torch.export.load`` runs: pickled members (sample inputs, which torch unpickles
with ``weights_only=False`` when the safe load fails; weights and constants flagged
``use_pickle``; custom and opaque objects), graph targets resolved by attribute lookup from the
``torch`` module (``torch.os.system`` resolves), symbolic-shape expressions parsed by
``sympy.sympify`` (an ``eval``) and guard code run by ``exec``. And zip readers disagree on
malformed archives: Python's ``zipfile`` keeps the last of two members of one name, torch's
reader (miniz) the first, and readers differ in which record they trust (central directory or
local header) where the two disagree. So
:func:`check_archive` validates the archive bytes before torch sees them (docs/quantization.md,
"The program file"):

* the zip structure is exactly what torch's writer produces: members back to back from the
  first byte, each a local header agreeing with its central-directory entry (name, flags,
  method; CRC and sizes left zero, as torch leaves them), stored uncompressed, unencrypted, its
  data 64-byte aligned by torch's padding extra field and followed by a data descriptor
  agreeing with the central entry (CRC, sizes), the CRC matching the data; then the central
  directory (no extra fields, no comments), the zip64 end record, its locator and the end
  record, which agree with each other, and nothing after them (no archive comment). No member
  name appears twice (compared as miniz compares them, ignoring case);
* only the members ``torch.export.save`` writes for one program and
  ``extra/lmfn_config.json``: no pickled weight or constant, no custom or opaque object, no
  legacy pickle file, no other extra file;
* every JSON member (the program, the weights and constants configs, ``lmfn_config.json``)
  is within a size and nesting-depth bound before it is parsed (:func:`lmfn_edge.metadata.parse_json`;
  the bounds, and what torch writes, are noted at ``_PROGRAM_JSON``);
* the sample inputs pass torch's restricted unpickler (``torch.load(weights_only=True)``), so
  torch's own first attempt succeeds and its unrestricted fallback never runs;
* every graph node calls an ``aten`` or ``quantized_decomposed`` operator (registered
  operators, not Python callables), there are no nested graphs, no symbolic shapes, no
  range constraints and no guard code (the programs this SDK writes have fixed shapes).

The file is read once, and torch loads, from memory, a fresh archive built from the checked
members alone (the very bytes each check read): no difference between zip readers, and no
change to the file between the check and the load, can put other bytes before torch.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError, first_line
from ..manifest import DYNAMIC_MULTIPLE, MAX_SIDE, MIN_DYNAMIC, package_versions
from ..metadata import MAX_METADATA_BYTES, MetadataError, parse_json
from .torch_zip import LayoutError, NotAZipError, canonical_archive, read_members

__all__ = [
    "FORMAT",
    "INFO_FILE",
    "QuantizedInfo",
    "QuantizedProgramError",
    "check_archive",
    "check_tile",
    "load_quantized",
    "save_quantized",
]

FORMAT = "lmfn-edge-quantized"
INFO_FILE = "lmfn_config.json"  # extra file inside the .pt2 archive
MAX_BYTES = 256 * 2**20  # a default x4 int8 program is 11 MB, a 32-block one about 45; larger is not one
METHODS = ("qat", "ptq")


def check_record(record, methods: tuple[str, ...], error: type[Exception]) -> None:
    """What an int8 program's or int8 parameters' record shares: a known ``method``, objects for
    ``config``, ``weights``, ``details`` and ``packages``, and a config that builds an LMFN."""
    if record.method not in methods:
        raise error(f"method must be one of {', '.join(methods)}, got {record.method!r}")
    for name in ("config", "weights", "details", "packages"):
        if not isinstance(getattr(record, name), dict):
            raise error(f"{name} must be an object, got {getattr(record, name)!r}")
    record_config(record, error)


def record_config(record, error: type[Exception]):
    """``record.config`` as an ``LMFNConfig``; ``error`` names what is wrong with it."""
    from ..model import LMFNConfig

    try:
        return LMFNConfig.from_dict(record.config)
    except (ValueError, TypeError) as exc:
        raise error(f"invalid LMFN config {record.config!r}: {exc}") from None

_OP_TARGET = re.compile(r"torch\.ops\.(aten|quantized_decomposed)\.[A-Za-z0-9_]+\.[A-Za-z0-9_]+")
_FIXED_MEMBERS = {"archive_format", "archive_version", "byteorder", ".data/version", ".data/serialization_id"}

# ``(max_bytes, max_depth)`` of each JSON member, far above what torch writes for LMFN programs
# (measured with torch 2.13). Depth follows torch's serialization schema, not the model: nodes
# are one flat list and an argument holds at most a flat list of tensors, so the program nests
# 10 levels for the tiny test program and the default x4 alike (program > graph_module > graph >
# nodes > node > inputs > input > arg > as_tensors > tensor); payload configs nest 6 and
# lmfn_config.json 2. Sizes grow with the node and weight counts, that is with num_blocks (not
# channels or kernel_size): the default x4 (8 blocks, 5,074 nodes, 1,540 weights) has an 8 MB
# program and a 0.5 MB weights config, so 32 blocks (the most LMFNConfig allows) about 32 and 2 MB.
_PROGRAM_JSON = (128 * 2**20, 32)
_PAYLOAD_CONFIG_JSON = (16 * 2**20, 16)
_INFO_JSON = (MAX_METADATA_BYTES, 16)


class QuantizedProgramError(UsageError):
    """A quantized program that is missing, malformed, unsafe, or does not fit the request."""


def check_tile(tile: int) -> int:
    """The LR tile of an int8 program: a multiple of 8 from 16 (the captured graph's grid) to the
    largest program input side."""
    if isinstance(tile, bool) or not isinstance(tile, int) or not MIN_DYNAMIC <= tile <= MAX_SIDE \
            or tile % DYNAMIC_MULTIPLE:
        raise QuantizedProgramError(
            f"tile must be a multiple of {DYNAMIC_MULTIPLE} from {MIN_DYNAMIC} (the captured graph assumes it) to "
            f"{MAX_SIDE}, got {tile!r}"
        )
    return tile


@dataclass
class QuantizedInfo:
    """What a quantized program carries besides its graph: enough to export and audit it.

    Attributes:
        method: ``qat`` or ``ptq``.
        config: The LMFN architecture (``LMFNConfig.to_dict()``).
        tile: Side of the square LR input the program was exported at (batch 1).
        weights: ``{"source": ..., "sha256": ...}`` of the float weights it started from.
        details: Method facts: QAT steps and schedule, PTQ calibration images.
        packages: Package versions that produced it.
    """

    method: str
    config: dict
    tile: int
    weights: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)
    packages: dict = field(default_factory=package_versions)

    def __post_init__(self) -> None:
        check_tile(self.tile)
        check_record(self, METHODS, QuantizedProgramError)

    @property
    def lmfn_config(self):
        return record_config(self, QuantizedProgramError)

    @property
    def scale(self) -> int:
        return self.lmfn_config.scale

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, **asdict(self)}, indent=2)

    @classmethod
    def from_json(cls, text: str | bytes, source: str) -> "QuantizedInfo":
        data = _parse_json(text, source, INFO_FILE, _INFO_JSON)
        if not isinstance(data, dict) or data.pop("format", None) != FORMAT:
            raise QuantizedProgramError(f"{source} is not an lmfn-edge quantized program (no {INFO_FILE})")
        missing = sorted({"method", "config", "tile"} - set(data))
        unknown = sorted(set(data) - {"method", "config", "tile", "weights", "details", "packages"})
        if missing or unknown:
            raise QuantizedProgramError(f"{source}: {INFO_FILE} has missing {missing} / unknown {unknown} fields")
        try:
            return cls(**data)
        except QuantizedProgramError as exc:
            raise QuantizedProgramError(f"{source}: {exc}") from None


def save_quantized(program, path: str | Path, info: QuantizedInfo) -> None:
    """Write ``program`` (a ``torch.export.ExportedProgram``) with ``info``, atomically."""
    import torch

    from ..files import atomic_write_bytes

    buffer = io.BytesIO()
    torch.export.save(program, buffer, extra_files={INFO_FILE: info.to_json()})
    data = buffer.getvalue()
    check_archive(data, str(path))  # what this writes, the loader must accept
    atomic_write_bytes(path, data)


def load_quantized(path: str | Path):
    """Read a program written by :func:`save_quantized`, executing nothing from the file.

    Returns:
        ``(torch.export.ExportedProgram, QuantizedInfo)``.

    Raises:
        QuantizedProgramError: With a one-line message, for a missing, unreadable, malformed or
            unsafe file.
    """
    path = Path(path)
    if not path.is_file():
        raise QuantizedProgramError(f"quantized program not found: {path}")
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise QuantizedProgramError(f"{path} is {size / 2**20:.0f} MB, too large for an LMFN program")
    members, info = _checked_members(path.read_bytes(), str(path))

    import torch

    # Registers the quantized_decomposed q/dq ops the graph refers to.
    import torch.ao.quantization.fx._decomposed  # noqa: F401

    try:
        program = torch.export.load(io.BytesIO(canonical_archive(members)))
    except Exception as exc:  # torch raises many types for an archive it cannot read
        raise QuantizedProgramError(f"cannot load quantized program {path}: {first_line(exc)}") from None
    example = program.example_inputs[0] if program.example_inputs else ()
    if len(example) != 1 or tuple(example[0].shape) != (1, 3, info.tile, info.tile):
        raise QuantizedProgramError(
            f"{path}: the program's example input {[tuple(t.shape) for t in example]} is not the "
            f"1x3x{info.tile}x{info.tile} tile its {INFO_FILE} records"
        )
    return program, info


def check_archive(data: bytes, source: str) -> QuantizedInfo:
    """Validate a .pt2 archive's bytes (see the module docstring); returns its info.

    Raises:
        QuantizedProgramError: On anything but the one-program, pickle-free layout this SDK
            writes.
    """
    return _checked_members(data, source)[1]


def _refusal(source: str):
    def refuse(problem: str) -> QuantizedProgramError:
        return QuantizedProgramError(f"{source}: {problem}; refusing to load it")

    return refuse


def _parse_json(data: bytes | str, source: str, member: str, limits: tuple[int, int]) -> Any:
    """``member`` of the archive ``source``, parsed once it is within ``limits`` (size, depth)."""
    try:
        return parse_json(data, member, *limits)
    except MetadataError as exc:
        raise _refusal(source)(str(exc)) from None


def _checked_members(data: bytes, source: str) -> tuple[dict[str, bytes], QuantizedInfo]:
    """The members of a valid archive (full names, in the file's order) and its info."""
    refuse = _refusal(source)
    try:
        archive = read_members(data)
    except NotAZipError:
        raise QuantizedProgramError(f"{source} is not a .pt2 program archive (not a zip file)") from None
    except LayoutError as exc:
        raise refuse(str(exc)) from None
    names = list(archive)
    roots = {n.split("/", 1)[0] for n in names}
    if len(roots) != 1 or not all("/" in n for n in names):
        raise refuse("not a single-folder .pt2 archive")
    root = roots.pop() + "/"
    members = {n[len(root):]: archive[n] for n in names}

    def read(name: str) -> bytes:
        if name not in members:
            raise refuse(f"missing {name}")
        return members[name]

    models = sorted(m for m in members if m.startswith("models/"))
    if len(models) != 1 or not models[0].endswith(".json"):
        raise refuse(f"expected one program in models/, found {models}")
    name = models[0][len("models/"):-len(".json")]
    weights_config, constants_config = (f"data/{d}/{name}_{d}_config.json" for d in ("weights", "constants"))
    sample_inputs = f"data/sample_inputs/{name}.pt"
    info_file = "extra/" + INFO_FILE
    if info_file not in members:
        raise QuantizedProgramError(f"{source} is not an lmfn-edge quantized program (no {INFO_FILE})")

    allowed = _FIXED_MEMBERS | {models[0], weights_config, constants_config, sample_inputs, info_file}
    for kind, config_name, prefix in (("weights", weights_config, "weight_"),
                                      ("constants", constants_config, "tensor_")):
        config = _parse_json(read(config_name), source, config_name, _PAYLOAD_CONFIG_JSON)
        entries = config.get("config") if isinstance(config, dict) else None
        if not isinstance(entries, dict):
            raise refuse(f"{config_name} is malformed")
        for fqn, meta in entries.items():
            if not isinstance(meta, dict) or meta.get("use_pickle") is not False:
                raise refuse(f"{kind} entry {fqn!r} is pickled (this SDK writes raw tensors only)")
            path_name = meta.get("path_name")
            if not isinstance(path_name, str) or not re.fullmatch(re.escape(prefix) + r"[0-9]+", path_name):
                raise refuse(f"{kind} entry {fqn!r} is not a plain tensor ({path_name!r})")
            allowed.add(f"data/{kind}/{path_name}")
    unexpected = [m for m in members if m not in allowed]
    if unexpected:
        raise refuse(f"unexpected member {unexpected[0]!r} (legacy pickles, custom objects, compiled kernels and "
                     "other extra files are not accepted)")

    _check_program_json(_parse_json(read(models[0]), source, models[0], _PROGRAM_JSON), refuse)
    _check_sample_inputs(read(sample_inputs), refuse)
    return archive, QuantizedInfo.from_json(read(info_file), source)


def _check_program_json(program: Any, refuse) -> None:
    """Fixed shapes and registered operators only: nothing torch would eval, exec or resolve."""
    if not isinstance(program, dict) or not isinstance(program.get("graph_module"), dict):
        raise refuse("the program JSON is malformed")
    if program.get("guards_code") not in (None, []):
        raise refuse("the program carries guard code")
    if program.get("range_constraints") not in (None, {}):
        raise refuse("the program has symbolic shapes (range constraints)")
    graph = program["graph_module"].get("graph")
    if not isinstance(graph, dict) or not isinstance(graph.get("nodes"), list):
        raise refuse("the program JSON has no graph")
    for key in ("sym_int_values", "sym_bool_values", "sym_float_values", "custom_obj_values"):
        if graph.get(key) not in (None, {}, []):
            raise refuse(f"the graph has {key.replace('_values', '')} values")

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if "expr_str" in value:
                raise refuse("the graph holds a symbolic expression")
            if "as_graph" in value:
                raise refuse("the graph holds a nested graph")
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    for node in graph["nodes"]:
        target = node.get("target") if isinstance(node, dict) else None
        if not isinstance(target, str) or not _OP_TARGET.fullmatch(target):
            raise refuse(f"a graph node calls {target!r}, not an aten or quantized_decomposed operator")
        walk(node.get("inputs"))
        walk(node.get("outputs"))
    walk(graph.get("tensor_values"))
    walk(program["graph_module"].get("signature"))


def _check_sample_inputs(payload: bytes, refuse) -> None:
    """Torch's restricted unpickler must accept the sample inputs: tensors and containers only."""
    import pickle

    import torch

    try:
        torch.load(io.BytesIO(payload), weights_only=True, map_location="cpu")
    except (pickle.UnpicklingError, RuntimeError, ValueError, EOFError, AttributeError, TypeError,
            ModuleNotFoundError, KeyError, IndexError) as exc:
        raise refuse(f"its sample inputs are not plain tensors ({first_line(exc, 160)})") from None
