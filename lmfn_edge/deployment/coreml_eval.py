"""Evaluate a Core ML ML program with numpy, op by op, to check conversions where Core ML cannot run.

Core ML predicts only on macOS (apple/coremltools#2658), but the converted MIL program is readable
everywhere: ``MLModel._mil_program`` after ``coremltools.convert``, or the protobuf of a saved
.mlpackage parsed back into MIL. :class:`MILEvaluator` walks ``main`` in program order and gives
every op the meaning written in coremltools' op definitions
(``coremltools.converters.mil.mil.ops.defs.iOS15`` to ``iOS18``): conv ``pad`` is
``[top, bottom, left, right]``, weights are ``[C_out, C_in / groups, kH, kW]`` and, for
conv_transpose, ``[C_in, C_out / groups, kH, kW]``; slice masks replace a bound by the full
extent; reshape's ``0`` copies the input dimension aligned from the right (iOS17).

Precision: every value is stored in the dtype the program declares for it, so an fp16 program
rounds each intermediate tensor to float16 exactly where Core ML stores one. Each op reads its
float16 inputs as float32, computes in float32 and rounds its result once; convolutions therefore
accumulate in float32. The summation order and accumulator width inside a Core ML kernel are
unspecified and differ between CPU, GPU and Neural Engine, so the evaluator models only the
rounding every backend must do (storing each tensor in float16) and leaves accumulation error to
the verification tolerance.

Nothing is skipped: an op type without an implementation raises :class:`UnsupportedOpError`
before evaluation starts, and every result is checked against the shape the program declares.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .. import console, interrupts
from ..errors import UsageError, first_line

__all__ = ["InputShapeError", "MILEvalError", "MILEvaluator", "UnsupportedOpError", "load_program"]


class MILEvalError(UsageError):
    """A program that cannot be evaluated: unreadable, inconsistent shapes, unsupported attributes."""


class UnsupportedOpError(MILEvalError):
    """The program contains an op type the evaluator does not implement."""


class InputShapeError(UsageError, ValueError):
    """An input is missing, or its shape is outside what the program accepts."""


def load_program(model: Any) -> tuple[Any, Any]:
    """The MIL program of ``model`` and its protobuf spec (``None`` for a bare program).

    Args:
        model: A ``coremltools.models.MLModel``, a path to an .mlpackage, or a MIL ``Program``.
    """
    import coremltools as ct

    interrupts.check()  # coremltools' imports swallow a Ctrl-C that comes meanwhile
    if hasattr(model, "functions"):
        return model, None
    source = "the model"
    if isinstance(model, (str, Path)):
        path = source = Path(model)
        if not path.exists():
            raise MILEvalError(f"Core ML model not found: {path}")
        try:
            with console.third_party():
                model = ct.models.MLModel(str(path), skip_model_load=True)  # loading needs macOS
        except Exception as exc:  # coremltools raises bare Exceptions for unreadable packages
            raise MILEvalError(f"{path} is not a readable Core ML package ({first_line(exc)})") from None
    spec = model.get_spec()
    if spec.WhichOneof("Type") != "mlProgram":
        raise MILEvalError("only ML programs (convert_to='mlprogram') can be evaluated, not neural networks")
    if model._mil_program is not None:
        return model._mil_program, spec
    from coremltools.converters.mil.frontend.milproto.load import load as milproto_load

    try:
        return milproto_load(spec, spec.specificationVersion, model.weights_dir), spec
    except Exception as exc:  # a package whose weights file is missing or truncated
        raise MILEvalError(f"{source}: cannot read the ML program ({first_line(exc)})") from None


@dataclass(frozen=True)
class InputSpec:
    """Shapes an input accepts: per-dimension ``(low, high)`` bounds (``high`` ``None`` when
    unbounded) or, for enumerated shapes, the list of shapes."""

    name: str
    bounds: tuple[tuple[int, int | None], ...]
    enumerated: tuple[tuple[int, ...], ...] = ()

    @property
    def fixed(self) -> tuple[int, ...] | None:
        if self.enumerated or any(lo != hi for lo, hi in self.bounds):
            return None
        return tuple(lo for lo, _ in self.bounds)

    def describe(self) -> str:
        if self.enumerated:
            return " or ".join(str(s) for s in self.enumerated)
        dims = [str(lo) if lo == hi else f"{lo}..{hi if hi is not None else 'inf'}" for lo, hi in self.bounds]
        return f"({', '.join(dims)})"

    def check(self, shape: tuple[int, ...]) -> None:
        ok = (
            tuple(shape) in self.enumerated
            if self.enumerated
            else len(shape) == len(self.bounds)
            and all(lo <= n and (hi is None or n <= hi) for n, (lo, hi) in zip(shape, self.bounds))
        )
        if not ok:
            raise InputShapeError(f"input {self.name!r} has shape {tuple(shape)}; the program accepts {self.describe()}")


def _input_specs(function, spec) -> dict[str, InputSpec]:
    from coremltools.converters.mil.mil.types.symbolic import is_symbolic

    from_spec = {}
    if spec is not None:
        for feature in spec.description.input:
            if feature.type.WhichOneof("Type") != "multiArrayType":
                continue
            arr = feature.type.multiArrayType
            if arr.WhichOneof("ShapeFlexibility") == "enumeratedShapes":
                shapes = tuple(tuple(int(d) for d in s.shape) for s in arr.enumeratedShapes.shapes)
                from_spec[feature.name] = InputSpec(feature.name, (), shapes)
            elif arr.WhichOneof("ShapeFlexibility") == "shapeRange":
                bounds = tuple(
                    (int(r.lowerBound), None if r.upperBound < 0 else int(r.upperBound))
                    for r in arr.shapeRange.sizeRanges
                )
                from_spec[feature.name] = InputSpec(feature.name, bounds)
    specs = {}
    for name, var in function.inputs.items():
        if name in from_spec:
            specs[name] = from_spec[name]
        else:
            bounds = tuple((1, None) if is_symbolic(d) else (int(d), int(d)) for d in var.shape)
            specs[name] = InputSpec(name, bounds)
    return specs


class MILEvaluator:
    """Numpy interpreter of one function of a Core ML ML program.

    Example::

        ev = MILEvaluator("lmfn_x4_coreml_fp16.mlpackage")
        sr = ev.predict({"lr": lr_nchw_float32})["sr"]
    """

    def __init__(self, model: Any, function: str = "main") -> None:
        self.program, self.spec = load_program(model)
        if function not in self.program.functions:
            raise MILEvalError(f"the program has no function {function!r}")
        self.function = self.program.functions[function]
        self.ops = list(self.function.operations)
        for op in self.ops:
            if op.op_type not in _OPS or op.blocks:
                raise UnsupportedOpError(
                    f"Core ML op type {op.op_type!r} (op {op.name!r}) is not supported by the numpy evaluator"
                )
        self.input_specs = _input_specs(self.function, self.spec)
        self.output_names = [v.name for v in self.function.outputs]
        self.op_counts = Counter(op.op_type for op in self.ops if op.op_type != "const")
        # Constants are widened once here rather than on every read (float16 -> float32 is exact).
        self._consts = {op.outputs[0].name: _widen(op.outputs[0].val) for op in self.ops if op.op_type == "const"}
        # Free each intermediate after its last reader, so full-size programs stay small in memory.
        last_use: dict[str, int] = {}
        for i, op in enumerate(self.ops):
            for var in _flat_inputs(op):
                last_use[var.name] = i
        keep = set(self.output_names)
        self._release = [[] for _ in self.ops]
        for name, i in last_use.items():
            if name not in keep and name not in self._consts:
                self._release[i].append(name)

    @property
    def compute_precision(self) -> str:
        """``int8`` when the program quantizes activations (W8A8), else ``fp16`` when any op
        produces float16 values, else ``fp32``."""
        from coremltools.converters.mil.mil import types

        if self.op_counts.get("quantize"):
            return "int8"
        fp16 = any(v.dtype == types.fp16 for op in self.ops if op.op_type != "const" for v in op.outputs)
        return "fp16" if fp16 else "fp32"

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Evaluate the function; returns its outputs by name, in their declared dtypes."""
        missing = set(self.input_specs) - set(inputs)
        extra = set(inputs) - set(self.input_specs)
        if missing or extra:
            raise InputShapeError(
                f"the program takes inputs {sorted(self.input_specs)}; got {sorted(inputs)}"
            )
        env: dict[str, Any] = dict(self._consts)
        symbols: dict[Any, int] = {}
        for name, var in self.function.inputs.items():
            x = np.asarray(inputs[name])
            self.input_specs[name].check(x.shape)
            env[name] = x.astype(_nptype(var.dtype))
            _check_shape(var, env[name].shape, symbols, f"input {name!r}")
        for op, release in zip(self.ops, self._release):
            interrupts.check()  # an op can take seconds in numpy
            if op.op_type != "const":
                args = {k: _read(v, env) for k, v in op.inputs.items()}
                try:
                    results = _OPS[op.op_type](op, args)
                except MILEvalError:
                    raise
                except Exception as exc:  # numpy raises many types; name the op that failed
                    raise MILEvalError(f"{op.op_type} {op.name!r} failed: {exc}") from exc
                if not isinstance(results, tuple):
                    results = (results,)
                for var, value in zip(op.outputs, results):
                    value = np.asarray(value).astype(_nptype(var.dtype), copy=False)
                    _check_shape(var, value.shape, symbols, f"{op.op_type} {op.name!r}")
                    env[var.name] = value
            for name in release:
                del env[name]
        return {name: env[name] for name in self.output_names}


def _flat_inputs(op) -> list:
    flat = []
    for v in op.inputs.values():
        flat.extend(v if isinstance(v, (list, tuple)) else [v])
    return flat


def _nptype(dtype) -> type:
    from coremltools.converters.mil.mil import types

    return types.nptype_from_builtin(dtype)


def _widen(value):
    """float16 arrays and scalars as float32; anything else unchanged."""
    if isinstance(value, (np.ndarray, np.floating)) and value.dtype == np.float16:
        return value.astype(np.float32)
    return value


def _read(var, env):
    """An op argument: tensors as arrays (float16 widened to float32), attributes as given."""
    if isinstance(var, (list, tuple)):
        return [_read(v, env) for v in var]
    return _widen(env[var.name])


def _check_shape(var, shape: tuple[int, ...], symbols: dict, where: str) -> None:
    """Compare a result's shape with the declared one, binding symbolic dimensions on first use."""
    import sympy

    declared = var.shape
    if len(declared) != len(shape):
        raise MILEvalError(f"{where}: result has shape {shape}, the program declares {declared}")
    for d, n in zip(declared, shape):
        if isinstance(d, sympy.Symbol):
            expected = symbols.setdefault(d, n)
        elif isinstance(d, sympy.Expr):
            if not d.free_symbols <= symbols.keys():
                continue
            expected = int(d.xreplace({s: symbols[s] for s in d.free_symbols}))
        else:
            expected = int(d)
        if expected != n:
            raise MILEvalError(f"{where}: result has shape {shape}, the program declares {declared}")


# --- geometry helpers -----------------------------------------------------------------------


def _ints(value, n: int, default: int) -> list[int]:
    return [default] * n if value is None else [int(v) for v in np.asarray(value).reshape(-1)]


def _pads(args, in_sizes, kernel, strides, dilations) -> list[tuple[int, int]]:
    """``(before, after)`` per spatial dim from ``pad_type``/``pad`` (conv and pooling)."""
    pad_type = str(args.get("pad_type", "valid"))
    n = len(in_sizes)
    if pad_type == "valid":
        return [(0, 0)] * n
    if pad_type == "custom":
        pad = _ints(args.get("pad"), 2 * n, 0)
        return [(pad[2 * i], pad[2 * i + 1]) for i in range(n)]
    if pad_type in ("same", "same_lower"):
        out = []
        for size, k, s, d in zip(in_sizes, kernel, strides, dilations):
            eff = (k - 1) * d + 1
            total = max(0, s * math.ceil(size / s) - size + eff - s)
            small, big = total // 2, total - total // 2
            # "same" puts an odd extra row/column after (bottom/right), "same_lower" before.
            out.append((small, big) if pad_type == "same" else (big, small))
        return out
    raise MILEvalError(f"unknown pad_type {pad_type!r}")


def _spatial(x: np.ndarray, op) -> None:
    if x.ndim != 4:
        raise MILEvalError(f"{op.op_type} {op.name!r}: only 2-D spatial inputs (rank 4) are supported, got rank {x.ndim}")


# --- convolution ----------------------------------------------------------------------------


def _tap(x: np.ndarray, i0: int, j0: int, oh: int, ow: int, sh: int, sw: int) -> np.ndarray:
    return x[:, :, i0 : i0 + (oh - 1) * sh + 1 : sh, j0 : j0 + (ow - 1) * sw + 1 : sw]


def _conv_args(op, a):
    """``x, weight, groups, strides, dilations`` of a conv or conv_transpose."""
    x = a["x"]
    _spatial(x, op)
    return x, a["weight"], int(a.get("groups", 1)), _ints(a.get("strides"), 2, 1), _ints(a.get("dilations"), 2, 1)


def _conv(op, a):
    x, w, groups, (sh, sw), (dh, dw) = _conv_args(op, a)
    n, cin, _, _ = x.shape
    cout, cin_g, kh, kw = w.shape
    if cin != cin_g * groups or cout % groups:
        raise MILEvalError(f"conv {op.name!r}: weight {w.shape} does not fit {cin} input channels in {groups} groups")
    (pt, pb), (pl, pr) = _pads(a, x.shape[2:], (kh, kw), (sh, sw), (dh, dw))
    x = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    oh = (x.shape[2] - (kh - 1) * dh - 1) // sh + 1
    ow = (x.shape[3] - (kw - 1) * dw - 1) // sw + 1
    if oh < 1 or ow < 1:
        raise MILEvalError(f"conv {op.name!r}: kernel larger than the padded input {x.shape[2:]}")
    cout_g = cout // groups
    out = np.zeros((n, cout, oh, ow), np.float32)
    if cin_g == 1:
        # Depthwise (with channel multiplier): output channel o reads input channel o // cout_g.
        src = x if cout_g == 1 else np.repeat(x, cout_g, axis=1)
        for i in range(kh):
            for j in range(kw):
                out += w[None, :, 0, i, j, None, None] * _tap(src, i * dh, j * dw, oh, ow, sh, sw)
    else:
        wg = w.reshape(groups, cout_g, cin_g, kh, kw)
        acc = out.reshape(n, groups, cout_g, oh * ow)
        for i in range(kh):
            for j in range(kw):
                cols = _tap(x, i * dh, j * dw, oh, ow, sh, sw).reshape(n, groups, cin_g, oh * ow)
                acc += wg[:, :, :, i, j] @ cols
    if a.get("bias") is not None:
        out += a["bias"].reshape(1, cout, 1, 1)
    return out


def _conv_transpose(op, a):
    x, w, groups, (sh, sw), (dh, dw) = _conv_args(op, a)
    n, cin, h, wd = x.shape
    cin_w, cout_g, kh, kw = w.shape
    if cin != cin_w or cin % groups:
        raise MILEvalError(f"conv_transpose {op.name!r}: weight {w.shape} does not fit {cin} input channels")
    cin_g, cout = cin // groups, cout_g * groups
    full_h, full_w = (h - 1) * sh + (kh - 1) * dh + 1, (wd - 1) * sw + (kw - 1) * dw + 1
    full = np.zeros((n, cout, full_h, full_w), np.float32)
    if cin_g == 1 and cout_g == 1:
        for i in range(kh):
            for j in range(kw):
                _tap(full, i * dh, j * dw, h, wd, sh, sw)[...] += w[None, :, 0, i, j, None, None] * x
    else:
        wg = w.reshape(groups, cin_g, cout_g, kh, kw)
        xg = x.reshape(n, groups, cin_g, h * wd)
        for i in range(kh):
            for j in range(kw):
                contrib = np.swapaxes(wg[:, :, :, i, j], 1, 2) @ xg  # (n, groups, cout_g, h*w)
                _tap(full, i * dh, j * dw, h, wd, sh, sw)[...] += contrib.reshape(n, cout, h, wd)
    pad_type = str(a.get("pad_type", "valid"))
    if pad_type == "custom":
        p = _ints(a.get("pad"), 4, 0)
        crops = [(p[0], p[1]), (p[2], p[3])]
    elif pad_type == "valid":
        crops = [(0, 0), (0, 0)]
    elif pad_type == "same":
        extra = [full_h - h * sh, full_w - wd * sw]
        crops = [(e // 2, e - e // 2) for e in extra]
    else:
        raise MILEvalError(f"conv_transpose {op.name!r}: unknown pad_type {pad_type!r}")
    out = full[:, :, crops[0][0] : full_h - crops[0][1], crops[1][0] : full_w - crops[1][1]]
    if a.get("output_shape") is not None:
        th, tw = _ints(a["output_shape"], 4, 0)[-2:]
        # The shape is under-determined for strided convs; extra rows/columns come at the end.
        out = np.pad(out[:, :, :th, :tw], ((0, 0), (0, 0), (0, max(0, th - out.shape[2])), (0, max(0, tw - out.shape[3]))))
    if a.get("bias") is not None:
        out = out + a["bias"].reshape(1, cout, 1, 1)
    return out


def _max_pool(op, a):
    x = a["x"]
    _spatial(x, op)
    kh, kw = _ints(a["kernel_sizes"], 2, 1)
    sh, sw = _ints(a.get("strides"), 2, 1)
    pads = _pads(a, x.shape[2:], (kh, kw), (sh, sw), (1, 1))
    sizes = []
    for size, k, s, (before, after) in zip(x.shape[2:], (kh, kw), (sh, sw), pads):
        span = size + before + after - k
        if bool(a.get("ceil_mode", False)):
            out = -(-span // s) + 1
            if (out - 1) * s >= size + before:  # a window may not start in the padding alone
                out -= 1
        else:
            out = span // s + 1
        sizes.append(out)
    (oh, ow) = sizes
    # Pad with -inf so padding never wins a max, and far enough for ceil-mode windows.
    extra_h = max(0, (oh - 1) * sh + kh - (x.shape[2] + pads[0][0] + pads[0][1]))
    extra_w = max(0, (ow - 1) * sw + kw - (x.shape[3] + pads[1][0] + pads[1][1]))
    x = np.pad(x, ((0, 0), (0, 0), (pads[0][0], pads[0][1] + extra_h), (pads[1][0], pads[1][1] + extra_w)),
               constant_values=-np.inf)
    windows = sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw][:, :, :oh, :ow]
    return windows.max(axis=(-2, -1))


# --- elementwise ----------------------------------------------------------------------------


def _erf(x: np.ndarray) -> np.ndarray:
    """erf to ~1.5e-7 absolute (Abramowitz and Stegun 7.1.26), computed in float64."""
    x = np.asarray(x, np.float64)
    t = 1.0 / (1.0 + 0.3275911 * np.abs(x))
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return np.sign(x) * (1.0 - poly * np.exp(-x * x))


def _gelu(op, a):
    x, mode = a["x"], str(a.get("mode", "EXACT"))
    if mode == "EXACT":
        return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))
    if mode == "TANH_APPROXIMATION":
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
    if mode == "SIGMOID_APPROXIMATION":
        return x / (1.0 + np.exp(-1.702 * x))
    raise MILEvalError(f"gelu {op.name!r}: unknown mode {mode!r}")


def _binary(fn):
    return lambda op, a: fn(a["x"], a["y"])


def _unary(fn):
    return lambda op, a: fn(a["x"])


def _matmul(op, a):
    # MIL matmul: numpy's batched, broadcasting matmul after the optional transposes.
    x, y = a["x"], a["y"]
    if bool(a.get("transpose_x", False)):
        x = np.swapaxes(x, -1, -2)
    if bool(a.get("transpose_y", False)):
        y = np.swapaxes(y, -1, -2)
    return np.matmul(x, y)


# --- tensor manipulation --------------------------------------------------------------------


def _slice_by_index(op, a):
    x = a["x"]
    rank = x.ndim
    begin, end = _ints(a["begin"], rank, 0), _ints(a["end"], rank, 0)
    stride = _ints(a.get("stride"), rank, 1)
    begin_mask = [bool(v) for v in np.asarray(a.get("begin_mask", [False] * rank)).reshape(-1)]
    end_mask = [bool(v) for v in np.asarray(a.get("end_mask", [False] * rank)).reshape(-1)]
    squeeze_mask = [bool(v) for v in np.asarray(a.get("squeeze_mask", [False] * rank)).reshape(-1)]
    index = tuple(
        begin[i] if squeeze_mask[i] else slice(None if begin_mask[i] else begin[i], None if end_mask[i] else end[i], stride[i])
        for i in range(rank)
    )
    return x[index]


def _reshape(op, a):
    x, shape = a["x"], _ints(a["shape"], 0, 0)
    # iOS17: a 0 copies the input dimension aligned from the right (1 when out of range).
    k = len(shape)
    target = [
        (x.shape[x.ndim - (k - i)] if x.ndim - (k - i) >= 0 else 1) if d == 0 else d for i, d in enumerate(shape)
    ]
    return x.reshape(target)


def _concat(op, a):
    values, axis = a["values"], int(a["axis"])
    # Shape arithmetic concatenates scalars into a 1-D shape vector.
    values = [np.reshape(v, (1,)) if np.ndim(v) == 0 else v for v in values]
    if not bool(a.get("interleave", False)):
        return np.concatenate(values, axis=axis)
    axis %= values[0].ndim
    stacked = np.stack(values, axis=axis + 1)
    shape = list(values[0].shape)
    shape[axis] *= len(values)
    return stacked.reshape(shape)


def _gather(op, a):
    if int(a.get("batch_dims", 0)) != 0:
        raise MILEvalError(f"gather {op.name!r}: batch_dims other than 0 is not supported")
    return np.take(a["x"], np.asarray(a["indices"]).astype(np.int64), axis=int(a.get("axis", 0)))


def _cast(op, a):
    from coremltools.converters.mil.mil import types

    return np.asarray(a["x"]).astype(types.nptype_from_builtin(types.string_to_builtin(str(a["dtype"]))))


# --- quantization ---------------------------------------------------------------------------


def _per_axis(param, ref: np.ndarray, axis) -> np.ndarray:
    """A scalar, or a vector along ``axis``, broadcast against ``ref``."""
    param = np.asarray(param, np.float32)
    if param.ndim == 0 or param.size == 1:
        return param.reshape(())
    shape = [1] * ref.ndim
    shape[int(axis) % ref.ndim] = param.size
    return param.reshape(shape)


def _quantize(op, a):
    from coremltools.converters.mil.mil import types

    x, axis = a["input"], a.get("axis", 0)
    dtype = types.nptype_from_builtin(types.string_to_builtin(str(a["output_dtype"])))
    q = np.round(x / _per_axis(a["scale"], x, axis))  # round half to even, as coremltools does
    if a.get("zero_point") is not None:
        q = q + _per_axis(a["zero_point"], x, axis)
    info = np.iinfo(dtype)
    return np.clip(q, info.min, info.max).astype(dtype)


def _dequantize(op, a, data_key="input"):
    q = np.asarray(a[data_key]).astype(np.float32)
    axis = a.get("axis", 0)
    if a.get("zero_point") is not None:
        q = q - _per_axis(a["zero_point"], q, axis)
    return q * _per_axis(a["scale"], q, axis)


def _blockwise_shift_scale(op, a):
    data = np.asarray(a["data"]).astype(np.float32)
    scale = np.asarray(a["scale"], np.float32)
    if scale.ndim != data.ndim or any(d % s for d, s in zip(data.shape, scale.shape)):
        raise MILEvalError(f"{op.name!r}: scale {scale.shape} does not tile data {data.shape}")

    def expand(p):
        for axis, (d, s) in enumerate(zip(data.shape, p.shape)):
            p = np.repeat(p, d // s, axis=axis)
        return p

    if a.get("offset") is not None:
        data = data - expand(np.asarray(a["offset"]).astype(np.float32))
    return data * expand(scale)


_OPS = {
    "const": None,  # values are read once, at construction
    "cast": _cast,
    "conv": _conv,
    "conv_transpose": _conv_transpose,
    "max_pool": _max_pool,
    "gelu": _gelu,
    "tanh": _unary(np.tanh),
    "abs": _unary(np.abs),
    "sigmoid": _unary(lambda x: 1.0 / (1.0 + np.exp(-x))),
    "relu": _unary(lambda x: np.maximum(x, 0)),
    "sqrt": _unary(np.sqrt),
    "exp": _unary(np.exp),
    "rsqrt": lambda op, a: 1.0 / np.sqrt(a["x"] + np.float32(a.get("epsilon", 1e-12))),
    "clip": lambda op, a: np.minimum(np.maximum(a["x"], a["alpha"]), a["beta"]),
    "matmul": _matmul,
    "add": _binary(np.add),
    "sub": _binary(np.subtract),
    "mul": _binary(np.multiply),
    "real_div": _binary(np.divide),
    "maximum": _binary(np.maximum),
    "minimum": _binary(np.minimum),
    "concat": _concat,
    "slice_by_index": _slice_by_index,
    "reshape": _reshape,
    "transpose": lambda op, a: np.transpose(a["x"], _ints(a["perm"], 0, 0)),
    "shape": lambda op, a: np.array(a["x"].shape, np.int32),
    "gather": _gather,
    "quantize": _quantize,
    "dequantize": _dequantize,
    "constexpr_affine_dequantize": lambda op, a: _dequantize(op, a, "quantized_data"),
    "constexpr_blockwise_shift_scale": _blockwise_shift_scale,
}
