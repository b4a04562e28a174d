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
``sympy.sympify`` (an ``eval``) and guard code run by ``exec``. :func:`check_archive` validates
the archive bytes before torch sees them (docs/quantization.md, "The program file"):

* only the members ``torch.export.save`` writes for one program, no pickled weight or
  constant, no custom or opaque object, no legacy pickle file;
* the sample inputs pass torch's restricted unpickler (``torch.load(weights_only=True)``), so
  torch's own first attempt succeeds and its unrestricted fallback never runs;
* every graph node calls an ``aten`` or ``quantized_decomposed`` operator (registered
  operators, not Python callables), there are no nested graphs, no symbolic shapes, no
  range constraints and no guard code (the programs this SDK writes have fixed shapes).

The bytes are read once and torch loads the validated bytes from memory, so the file cannot be
swapped between the check and the load.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..manifest import DYNAMIC_MULTIPLE, MIN_DYNAMIC, package_versions

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
MAX_BYTES = 256 * 2**20  # an LMFN int8 program is about 2 MB; anything far larger is not one
METHODS = ("qat", "ptq")

_OP_TARGET = re.compile(r"torch\.ops\.(aten|quantized_decomposed)\.[A-Za-z0-9_]+\.[A-Za-z0-9_]+")
_FIXED_MEMBERS = {"archive_format", "archive_version", "byteorder", ".data/version", ".data/serialization_id"}


class QuantizedProgramError(UsageError):
    """A quantized program that is missing, malformed, unsafe, or does not fit the request."""


def check_tile(tile: int) -> int:
    """The LR tile of an int8 program: a multiple of 8, at least 16 (the captured graph's grid)."""
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < MIN_DYNAMIC or tile % DYNAMIC_MULTIPLE:
        raise QuantizedProgramError(
            f"tile must be a multiple of {DYNAMIC_MULTIPLE} and >= {MIN_DYNAMIC} (the captured graph assumes it), "
            f"got {tile!r}"
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
        if self.method not in METHODS:
            raise QuantizedProgramError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        check_tile(self.tile)
        for name in ("config", "weights", "details", "packages"):
            if not isinstance(getattr(self, name), dict):
                raise QuantizedProgramError(f"{name} must be an object, got {getattr(self, name)!r}")
        self.lmfn_config  # noqa: B018  (validates the architecture)

    @property
    def lmfn_config(self):
        from ..model import LMFNConfig

        try:
            return LMFNConfig.from_dict(self.config)
        except (ValueError, TypeError) as exc:
            raise QuantizedProgramError(f"invalid LMFN config {self.config!r}: {exc}") from None

    @property
    def scale(self) -> int:
        return self.lmfn_config.scale

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, **asdict(self)}, indent=2)

    @classmethod
    def from_json(cls, text: str, source: str) -> "QuantizedInfo":
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            raise QuantizedProgramError(f"{source}: {INFO_FILE} is not valid JSON") from None
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

    from ..io import atomic_write_bytes

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
    data = path.read_bytes()
    info = check_archive(data, str(path))

    import torch

    # Registers the quantized_decomposed q/dq ops the graph refers to.
    import torch.ao.quantization.fx._decomposed  # noqa: F401

    try:
        program = torch.export.load(io.BytesIO(data))
    except Exception as exc:  # torch raises many types for an archive it cannot read
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise QuantizedProgramError(f"cannot load quantized program {path}: {first}") from None
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
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = archive.namelist()
    except (zipfile.BadZipFile, ValueError, OSError, EOFError):
        raise QuantizedProgramError(f"{source} is not a .pt2 program archive (not a zip file)") from None

    def refuse(problem: str) -> QuantizedProgramError:
        return QuantizedProgramError(f"{source}: {problem}; refusing to load it")

    roots = {n.split("/", 1)[0] for n in names}
    if len(roots) != 1 or not all("/" in n for n in names):
        raise refuse("not a single-folder .pt2 archive")
    root = roots.pop() + "/"

    def read(name: str) -> bytes:
        try:
            return archive.read(root + name)
        except KeyError:
            raise refuse(f"missing {name}") from None
        except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as exc:
            raise refuse(f"cannot read {name} ({exc})") from None

    def read_json(name: str) -> Any:
        try:
            return json.loads(read(name).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise refuse(f"{name} is not valid JSON") from None

    members = {n[len(root):] for n in names if not n.endswith("/")}
    models = sorted(m for m in members if m.startswith("models/"))
    if len(models) != 1 or not models[0].endswith(".json"):
        raise refuse(f"expected one program in models/, found {models}")
    name = models[0][len("models/"):-len(".json")]
    weights_config, constants_config = (f"data/{d}/{name}_{d}_config.json" for d in ("weights", "constants"))
    sample_inputs = f"data/sample_inputs/{name}.pt"
    if INFO_FILE not in {m[len("extra/"):] for m in members if m.startswith("extra/")}:
        raise QuantizedProgramError(f"{source} is not an lmfn-edge quantized program (no {INFO_FILE})")

    allowed = _FIXED_MEMBERS | {models[0], weights_config, constants_config, sample_inputs}
    for kind, config_name, prefix in (("weights", weights_config, "weight_"), ("constants", constants_config, "tensor_")):
        config = read_json(config_name)
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
    unexpected = sorted(m for m in members - allowed if not m.startswith("extra/"))
    if unexpected:
        raise refuse(f"unexpected member {unexpected[0]!r} (legacy pickles, custom objects and compiled "
                     "kernels are not accepted)")

    _check_program_json(read_json(models[0]), refuse)
    _check_sample_inputs(read(sample_inputs), refuse)
    try:
        info_text = read("extra/" + INFO_FILE).decode("utf-8")
    except UnicodeDecodeError:
        raise refuse(f"{INFO_FILE} is not UTF-8 text") from None
    return QuantizedInfo.from_json(info_text, source)


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
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise refuse(f"its sample inputs are not plain tensors ({first[:160]})") from None
