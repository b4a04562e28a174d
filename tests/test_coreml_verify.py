"""Core ML verification on Linux: the numpy MIL evaluator op by op against PyTorch, converted LMFN
programs (x2/x3/x4, fixed and flexible shapes, fp32 and fp16) against the eager model, and
programs with one op altered, which must fail. Conversions are cached per module (four in all)."""

import platform
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

ct = pytest.importorskip("coremltools")
from coremltools.converters.mil import Builder as mb  # noqa: E402

from helpers import bent_model  # noqa: E402
from lmfn_edge import create_model  # noqa: E402
from lmfn_edge.deployment import export  # noqa: E402
from lmfn_edge.deployment.coreml_eval import (  # noqa: E402
    InputShapeError,
    MILEvalError,
    MILEvaluator,
    UnsupportedOpError,
    load_program,
)
from lmfn_edge.deployment.coreml_verify import FP16_MIN_PSNR, FP32_MAX_ABS, verify  # noqa: E402
from lmfn_edge.imresize import bicubic_downscale  # noqa: E402
from lmfn_edge.manifest import ShapeSpec  # noqa: E402
from lmfn_edge.model.weights import save_weights  # noqa: E402
from lmfn_edge.verify_coreml import main  # noqa: E402

# An MSM block (whose pooling and DSConvs feed the output directly, so small alterations show)
# and an IFM block (LKA's dilated convs, MSM and IFM in both branches).
TINY = dict(channels=16, num_blocks=2, pattern="MI", kernel_size=5)
# One MSM block holds every op that shape flexibility adds (shape, gather, integer arithmetic)
# at a fraction of TINY's conversion time, which grows with the number of DSConvs.
SMALL = dict(channels=8, num_blocks=1, pattern="M", kernel_size=3)


def perturbed_model(scale, config, seed=0):
    """Line kernels at a trained-like scale besides the bent offsets: at default init a wrong MSM
    pooling window moves the output by only ~1e-4, too close to the fp32 tolerance to prove anything."""
    return bent_model(scale, seed, line_std=0.5, **config)


@pytest.fixture(scope="module")
def photos():
    """Benchmark-style LR inputs: scikit-image photos bicubic-downscaled by 4."""
    data = pytest.importorskip("skimage.data")
    return [bicubic_downscale(np.asarray(data.astronaut()), 4), bicubic_downscale(np.asarray(data.coffee()), 4)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``exported(scale, config, shape, precision) -> (model, package path)``, converted once."""
    cache = {}
    folder = tmp_path_factory.mktemp("coreml")

    def get(scale, config, shape, precision):
        key = (scale, tuple(config.items()), shape, precision)
        if key not in cache:
            model = perturbed_model(scale, config)
            path = folder / f"m{len(cache)}.mlpackage"
            export(model, "coreml", path, ShapeSpec.parse(shape), precision)
            cache[key] = model, path
        return cache[key]

    return get


def run(program, **inputs):
    (out,) = MILEvaluator(program).predict(inputs).values()
    return out


def program_of(build, shape):
    return mb.program(input_specs=[mb.TensorSpec(shape=shape)], opset_version=ct.target.iOS17)(build)


# --- op semantics against PyTorch -----------------------------------------------------------

rng = np.random.default_rng(0)


@pytest.mark.parametrize(
    "cin,cout,k,groups,stride,dilation,pad",
    [
        (4, 6, 3, 1, (1, 1), (1, 1), (1, 1, 1, 1)),
        (4, 6, 3, 2, (2, 1), (1, 2), (1, 0, 2, 3)),  # grouped, strided, dilated, asymmetric pads
        (4, 4, 5, 4, (1, 1), (3, 3), (6, 6, 6, 6)),  # LKA's dilated depthwise conv
        (4, 8, 3, 4, (2, 2), (1, 1), (0, 1, 1, 0)),  # depthwise with channel multiplier 2
        (4, 3, 1, 1, (1, 1), (1, 1), (0, 0, 0, 0)),
    ],
)
def test_conv_matches_torch(cin, cout, k, groups, stride, dilation, pad):
    w = rng.standard_normal((cout, cin // groups, k, k)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    x = rng.standard_normal((2, cin, 11, 9)).astype(np.float32)
    prog = program_of(
        lambda x: mb.conv(x=x, weight=w, bias=b, strides=stride, dilations=dilation, pad_type="custom", pad=pad, groups=groups),
        x.shape,
    )
    t = F.pad(torch.from_numpy(x), (pad[2], pad[3], pad[0], pad[1]))
    ref = F.conv2d(t, torch.from_numpy(w), torch.from_numpy(b), stride=stride, dilation=dilation, groups=groups)
    np.testing.assert_allclose(run(prog, x=x), ref.numpy(), atol=1e-5)


@pytest.mark.parametrize("k", [3, 4])
def test_conv_same_padding_matches_torch(k):
    # torch's padding="same" also puts the odd extra row/column after, as MIL's "same" does.
    w = rng.standard_normal((3, 2, k, k)).astype(np.float32)
    x = rng.standard_normal((1, 2, 7, 8)).astype(np.float32)
    prog = program_of(lambda x: mb.conv(x=x, weight=w, pad_type="same"), x.shape)
    ref = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding="same")
    np.testing.assert_allclose(run(prog, x=x), ref.numpy(), atol=1e-5)


@pytest.mark.parametrize(
    "cin,cout,k,groups,stride,pad",
    [
        (4, 4, 2, 4, (2, 2), (0, 0, 0, 0)),  # MSM's nearest upsampler
        (12, 3, 2, 1, (2, 2), (0, 0, 0, 0)),  # one-hot pixel shuffle
        (4, 6, 3, 2, (2, 3), (1, 0, 1, 2)),
    ],
)
def test_conv_transpose_matches_torch(cin, cout, k, groups, stride, pad):
    w = rng.standard_normal((cin, cout // groups, k, k)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    x = rng.standard_normal((1, cin, 5, 6)).astype(np.float32)
    prog = program_of(
        lambda x: mb.conv_transpose(x=x, weight=w, bias=b, strides=stride, pad_type="custom", pad=pad, groups=groups),
        x.shape,
    )
    ref = F.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), stride=stride, groups=groups)
    ref = ref[:, :, pad[0] : ref.shape[2] - pad[1], pad[2] : ref.shape[3] - pad[3]]
    np.testing.assert_allclose(run(prog, x=x), ref.numpy(), atol=1e-5)


@pytest.mark.parametrize("k,s,p,ceil", [(2, 2, 0, False), (8, 8, 0, False), (3, 2, 1, True), (3, 2, 0, True)])
def test_max_pool_matches_torch(k, s, p, ceil):
    x = rng.standard_normal((1, 3, 16, 11)).astype(np.float32)
    prog = program_of(
        lambda x: mb.max_pool(x=x, kernel_sizes=[k, k], strides=[s, s], pad_type="custom", pad=[p] * 4, ceil_mode=ceil),
        x.shape,
    )
    ref = F.max_pool2d(torch.from_numpy(x), k, s, p, ceil_mode=ceil)
    np.testing.assert_array_equal(run(prog, x=x), ref.numpy())


def test_slice_by_index_masks_and_strides():
    x = rng.standard_normal((2, 6, 7, 5)).astype(np.float32)
    prog = program_of(
        lambda x: mb.slice_by_index(
            x=x, begin=[1, 1, 0, 4], end=[0, 5, 6, 0], stride=[1, 2, 3, -2],
            begin_mask=[False, False, True, False], end_mask=[True, False, False, True],
            squeeze_mask=[True, False, False, False],
        ),
        x.shape,
    )
    np.testing.assert_array_equal(run(prog, x=x), x[1, 1:5:2, :6:3, 4::-2])


def test_elementwise_shape_and_concat_ops():
    x = rng.standard_normal((1, 4, 3, 2)).astype(np.float32)

    def build(x):
        y = mb.concat(values=[x, mb.abs(x=x)], axis=1, interleave=True)  # channels x0, |x0|, x1, ...
        y = mb.reshape(x=y, shape=[0, 2, -1, 0])  # iOS17: 0 copies the dim aligned from the right
        y = mb.transpose(x=y, perm=[0, 2, 1, 3])
        y = mb.clip(x=mb.tanh(x=y), alpha=-0.5, beta=0.25)
        return mb.add(x=mb.gelu(x=y, mode="EXACT"), y=mb.rsqrt(x=mb.mul(x=y, y=y), epsilon=1.0))

    inter = np.stack([x, np.abs(x)], axis=2).reshape(1, 8, 3, 2)
    y = np.clip(np.tanh(inter.reshape(1, 2, 12, 2).transpose(0, 2, 1, 3)), -0.5, 0.25)
    ref = F.gelu(torch.from_numpy(y)).numpy() + 1 / np.sqrt(y * y + 1)
    np.testing.assert_allclose(run(program_of(build, x.shape), x=x), ref, atol=1e-6)


@pytest.mark.parametrize("transpose_x,transpose_y", [(False, False), (True, False), (False, True)])
def test_matmul_and_relu_match_torch(transpose_x, transpose_y):
    # The DSConv deploy form's bilinear and line-kernel bmm, with a broadcast batch.
    x = rng.standard_normal((3, 5, 4)).astype(np.float32)
    y = rng.standard_normal((1, 4, 6) if not transpose_y else (1, 6, 4)).astype(np.float32)
    xt = torch.from_numpy(x).transpose(-1, -2) if transpose_x else torch.from_numpy(x)

    def build(x):
        a = mb.transpose(x=x, perm=[0, 2, 1]) if transpose_x else x
        return mb.relu(x=mb.matmul(x=a, y=y, transpose_x=transpose_x, transpose_y=transpose_y))

    yt = torch.from_numpy(y).transpose(-1, -2) if transpose_y else torch.from_numpy(y)
    ref = torch.relu(torch.matmul(xt.transpose(-1, -2) if transpose_x else xt, yt)).numpy()
    np.testing.assert_allclose(run(program_of(build, x.shape), x=x), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode,approx", [("EXACT", "none"), ("TANH_APPROXIMATION", "tanh")])
def test_gelu_modes_match_torch(mode, approx):
    x = np.linspace(-8, 8, 401, dtype=np.float32).reshape(1, 401)
    ref = F.gelu(torch.from_numpy(x), approximate=approx).numpy()
    np.testing.assert_allclose(run(program_of(lambda x: mb.gelu(x=x, mode=mode), x.shape), x=x), ref, atol=1e-6)


def test_quantize_dequantize_round_trip():
    x = np.array([[-1.0, -0.26, 0.25, 0.75, 0.26, 2.0]], np.float32)

    def build(x):
        q = mb.quantize(input=x, scale=np.float32(0.5), zero_point=np.int8(3), output_dtype="int8")
        return mb.dequantize(input=q, scale=np.float32(0.5), zero_point=np.int8(3))

    # round(x / 0.5) with ties to even (0.5 -> 0, 1.5 -> 2), + 3, dequantized.
    np.testing.assert_array_equal(run(program_of(build, x.shape), x=x), [[-1.0, -0.5, 0.0, 1.0, 0.5, 2.0]])


@pytest.mark.parametrize("blockwise", [False, True])
def test_compressed_weights_decompress_per_op_definition(blockwise):
    q = rng.integers(-128, 128, (4, 6, 1, 1)).astype(np.int8)
    qf = q.astype(np.float32)  # int8 arithmetic would wrap around
    x = rng.standard_normal((1, 6, 3, 3)).astype(np.float32)
    if blockwise:  # iOS18: one scale and offset per block of 3 input channels
        scale = rng.uniform(0.01, 0.1, (4, 2, 1, 1)).astype(np.float32)
        offset = rng.integers(-3, 4, (4, 2, 1, 1)).astype(np.int8)
        w = (qf - np.repeat(offset, 3, axis=1)) * np.repeat(scale, 3, axis=1)
        decompress, target = lambda: mb.constexpr_blockwise_shift_scale(data=q, scale=scale, offset=offset), ct.target.iOS18
    else:  # iOS16: per output channel along axis 0
        scale = rng.uniform(0.01, 0.1, 4).astype(np.float32)
        zero_point = rng.integers(-3, 4, 4).astype(np.int8)
        w = (qf - zero_point.reshape(4, 1, 1, 1)) * scale.reshape(4, 1, 1, 1)
        decompress, target = (
            lambda: mb.constexpr_affine_dequantize(quantized_data=q, zero_point=zero_point, scale=scale, axis=0),
            ct.target.iOS17,
        )
    prog = mb.program(input_specs=[mb.TensorSpec(shape=x.shape)], opset_version=target)(
        lambda x: mb.conv(x=x, weight=decompress())
    )
    ref = F.conv2d(torch.from_numpy(x), torch.from_numpy(w))
    np.testing.assert_allclose(run(prog, x=x), ref.numpy(), atol=1e-5)


def test_fp16_values_are_rounded_like_core_ml():
    x = np.array([[1.0, 1e-4, 3.0]], np.float32)
    prog = program_of(lambda x: mb.cast(x=mb.add(x=mb.cast(x=x, dtype="fp16"), y=np.float16(2048.0)), dtype="fp32"), x.shape)
    # float16 has an 11-bit significand: 2049 rounds to 2048 (ties to even), 2051 to 2052.
    np.testing.assert_array_equal(run(prog, x=x), [[2048.0, 2048.0, 2052.0]])


def test_unknown_op_type_raises_naming_it():
    prog = program_of(lambda x: mb.sin(x=x, name="my_sin"), (1, 3))
    with pytest.raises(UnsupportedOpError, match=r"'sin'.*'my_sin'"):
        MILEvaluator(prog)


def test_inputs_outside_the_program_shape_are_rejected():
    prog = program_of(lambda x: mb.abs(x=x), (1, 3, 8, 8))
    ev = MILEvaluator(prog)
    with pytest.raises(InputShapeError, match=r"\(1, 3, 8, 9\).*\(1, 3, 8, 8\)"):
        ev.predict({"x": np.zeros((1, 3, 8, 9), np.float32)})
    with pytest.raises(InputShapeError, match="takes inputs"):
        ev.predict({"lr": np.zeros((1, 3, 8, 8), np.float32)})


# --- converted LMFN programs against the eager model ----------------------------------------


def test_fp32_program_matches_eager_on_photos(exported, photos):
    model, path = exported(2, TINY, "32x32", "fp32")
    report = verify(path, model, photos)
    assert report.precision == "fp32" and report.passed, report.summary()
    assert max(c.max_abs for c in report.images) <= FP32_MAX_ABS
    assert {"conv", "matmul", "transpose", "reshape", "max_pool", "gelu", "slice_by_index", "rsqrt"} <= set(report.op_counts)


def test_fp16_program_within_psnr_bound_and_rounds_to_fp16(exported, photos):
    model, path = exported(2, TINY, "32x32", "fp16")
    report = verify(path, model, photos)
    assert report.precision == "fp16" and report.passed, report.summary()
    # Passing by evaluating in float32 would be a blind spot: float16 storage must show.
    assert all(FP16_MIN_PSNR <= c.psnr < 100 and c.max_abs > 1e-5 for c in report.images), report.summary()


@pytest.mark.slow  # Core ML conversions at several sizes (about 25 s)
def test_flexible_fp32_program_any_size_in_range(exported):
    model, path = exported(3, SMALL, "16:32", "fp32")
    ev = MILEvaluator(path)
    assert ev.input_specs["lr"].bounds[2:] == ((16, 32), (16, 32))
    for h, w in [(16, 16), (24, 32), (32, 16)]:
        x = torch.rand(1, 3, h, w)
        with torch.no_grad():
            ref = model(x).numpy()
        assert np.abs(ev.predict({"lr": x.numpy()})["sr"] - ref).max() <= FP32_MAX_ABS
    with pytest.raises(InputShapeError, match="16..32"):
        ev.predict({"lr": np.zeros((1, 3, 40, 16), np.float32)})
    # In range but off export's multiple-of-8 grid: MSM's pooled branches no longer line up.
    with pytest.raises(MILEvalError, match="failed"):
        ev.predict({"lr": np.zeros((1, 3, 20, 20), np.float32)})


def test_flexible_fp16_program_x4(exported, photos):
    model, path = exported(4, SMALL, "16:32", "fp16")
    report = verify(path, model, photos[:1], size=24)
    assert report.passed and report.images[0].lr_size == (24, 24), report.summary()


# --- altered programs must fail -------------------------------------------------------------


def _first(program, op_type, pick):
    return next(op for op in program.functions["main"].operations if op.op_type == op_type and pick(op))


def _alter(program, op, **values):
    """Rebind ``op``'s inputs to new consts (shared consts stay untouched for other ops)."""
    with program.functions["main"]:
        op.set_inputs(**{k: mb.const(val=v, before_op=op) for k, v in values.items()})


def _val(op, name, default):
    return op.inputs[name].val if name in op.inputs else default


def shift_pad(p):
    op = _first(p, "conv", lambda o: list(_val(o, "pad", [])) == [1, 1, 1, 1])
    _alter(p, op, pad=np.array([2, 0, 1, 1], np.int32))  # same output size, rows shifted by one


def change_dilation(p):
    op = _first(p, "conv", lambda o: list(_val(o, "dilations", [])) == [3, 3])
    _alter(p, op, dilations=np.array([2, 2], np.int32), pad=np.array([4, 4, 4, 4], np.int32))


def change_pool_window(p):
    op = _first(p, "max_pool", lambda o: list(o.inputs["kernel_sizes"].val) == [2, 2])
    _alter(p, op, kernel_sizes=np.array([2, 1], np.int32))  # pools rows only; same output size


def change_weight(p):
    op = _first(p, "conv", lambda o: o.inputs["weight"].val is not None)
    w = op.inputs["weight"].val.copy()
    w.flat[0] += 0.5
    _alter(p, op, weight=w)


def shift_slice(p):
    def channel_split(o):
        end_mask = _val(o, "end_mask", [False] * 4)
        return not end_mask[1] and o.inputs["end"].val[1] < o.inputs["x"].shape[1]

    op = _first(p, "slice_by_index", channel_split)
    _alter(p, op, begin=op.inputs["begin"].val + [0, 1, 0, 0], end=op.inputs["end"].val + [0, 1, 0, 0])


@pytest.mark.parametrize("mutation", [shift_pad, change_dilation, change_pool_window, change_weight, shift_slice])
def test_altered_fp32_program_fails(exported, photos, mutation):
    model, path = exported(2, TINY, "32x32", "fp32")
    program, _ = load_program(path)
    mutation(program)
    report = verify(program, model, photos[:1])
    assert not report.passed, report.summary()


# Smaller alterations (a pooling window, a dilation) stay below fp16 rounding noise with these
# weights; the fp32 export of the same weights is where structure is proven.
@pytest.mark.parametrize("mutation", [shift_pad, change_weight])
def test_altered_fp16_program_fails_psnr_bound(exported, photos, mutation):
    model, path = exported(2, TINY, "32x32", "fp16")
    program, _ = load_program(path)
    mutation(program)
    report = verify(program, model, photos[:1])
    assert not report.passed and report.images[0].psnr < FP16_MIN_PSNR, report.summary()


def test_shape_changing_alteration_is_an_error_not_a_pass(exported, photos):
    model, path = exported(2, TINY, "32x32", "fp32")
    program, _ = load_program(path)
    op = _first(program, "conv", lambda o: list(_val(o, "dilations", [])) == [3, 3])
    _alter(program, op, dilations=np.array([2, 2], np.int32))  # output grows by 4: declared shape breaks
    with pytest.raises(MILEvalError, match=re.escape(op.name)):
        verify(program, model, photos[:1])


# --- command line ---------------------------------------------------------------------------


def test_cli_passes_fails_and_reports_errors(exported, photos, tmp_path, capsys):
    from PIL import Image

    model, path = exported(2, TINY, "32x32", "fp32")
    save_weights(model, tmp_path / "w.safetensors")
    save_weights(perturbed_model(2, TINY, seed=1), tmp_path / "other.safetensors")
    Image.fromarray(photos[0]).save(tmp_path / "a.png")
    args = [str(path), "--images", str(tmp_path / "a.png")]

    assert main(args + ["--weights", str(tmp_path / "w.safetensors")]) == 0
    assert capsys.readouterr().out.strip().endswith("PASS")
    assert main(args + ["--weights", str(tmp_path / "other.safetensors")]) == 1
    assert capsys.readouterr().out.strip().endswith("FAIL")
    assert main([str(tmp_path / "missing.mlpackage"), "--random-init", "--scale", "2"]) == 2
    assert "error: model not found" in capsys.readouterr().err
    assert main(args + ["--weights", str(tmp_path / "w.safetensors"), "--scale", "3"]) == 2
    assert "the package upscales x2, but --scale 3 was given" in capsys.readouterr().err
    # Without --weights the sidecar's record is used: here an in-memory model, so it must be named.
    assert main(args) == 2
    assert "pass --weights W.safetensors" in capsys.readouterr().err


# --- macOS: Core ML itself ------------------------------------------------------------------


@pytest.mark.macos
@pytest.mark.skipif(platform.system() != "Darwin", reason="Core ML predict() runs only on macOS")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_coreml_predict_matches_evaluator(exported, photos, precision):
    model, path = exported(2, TINY, "32x32", precision)
    report = verify(path, model, photos)
    assert all(c.coreml_max_abs is not None for c in report.images)
    assert report.passed, report.summary()


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_full_size_x4_at_64(tmp_path, photos, precision):
    torch.manual_seed(0)
    model = create_model("lmfn_x4").eval()
    path = tmp_path / "full.mlpackage"
    export(model, "coreml", path, ShapeSpec(64, 64), precision)
    report = verify(path, model, photos)
    assert report.passed, report.summary()
