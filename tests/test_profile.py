"""``bench --profile`` names LMFN's modules: the sidecar's node map, the walk that lines XNNPACK's
operators up with it, and a check of the result against the eager deploy form's own convolutions."""

from collections import Counter

import pytest
import torch
from helpers import tiny_model

from lmfn_edge import bench
from lmfn_edge.deployment.xnnpack_map import ModuleMapError, read_module_map
from lmfn_edge.evaluation.profile import match_operators, profile_pte
from lmfn_edge.manifest import read_manifest
from lmfn_edge.model.deploy import to_deploy

# --- the walk, on sequences written out by hand ------------------------------------------------


def test_each_operator_belongs_to_the_node_it_runs_for():
    kinds = ["XNNStaticTranspose", "XNNConv2d", "XNNDepthwiseConv2d", "XNNGelu", "XNNMultiply", "XNNConcatenate3"]
    kernels = ["Transpose (ND, X32)", "Fully Connected (NC, F32) GEMM", "Convolution (NHWC, F32) DWConv",
               "GELU (NC)", "Square (NC)", "Copy (NC, X32)"]
    assert match_operators(kernels, kinds) == [0, 1, 2, 3, 4, 5]


def test_a_fused_activation_run_on_its_own_is_its_node_s():
    # ExecuTorch folds a ReLU into the subtract before it; XNNPACK runs it as a Clamp after.
    kinds = ["XNNSubtract", "XNNStaticSlice", "XNNClamp"]
    kernels = ["Subtract (ND)", "Clamp (NC)", "Slice (ND, X32)", "Clamp (NC)"]
    assert match_operators(kernels, kinds) == [0, 0, 1, 2]


def test_dropped_nodes_are_stepped_over():
    # int8: a GELU and the Converts around it run as one lookup-table operator.
    kinds = ["XNNConv2d", "XNNConvert", "XNNGelu", "XNNConvert", "XNNConv2d"]
    kernels = ["Convolution (NHWC, QC8) IGEMM", "Invalid Unary Op", "Fully Connected (NC, QS8, QC8W) GEMM"]
    assert match_operators(kernels, kinds) == [0, 2, 4]


@pytest.mark.parametrize("kernels", [
    ["Convolution (NHWC, F32) IGEMM", "Max Pooling (NHWC, F32)"],  # an operator no node runs as
    ["Convolution (NHWC, F32) IGEMM", "Add (ND)", "Add (ND)"],  # an operator left over
    ["Clamp (NC)"],  # an activation with no node before it
])
def test_operators_that_do_not_line_up_are_not_named(kernels):
    assert match_operators(kernels, ["XNNConv2d", "XNNAdd"]) is None


def test_a_long_run_of_missing_nodes_is_a_mismatch():
    kinds = ["XNNConv2d"] + ["XNNStaticReshape"] * 20 + ["XNNAdd"]
    assert match_operators(["Convolution (NHWC, F32) IGEMM", "Add (ND)"], kinds) is None


# --- the sidecar's map, read field by field ----------------------------------------------------

GOOD = {"version": 1, "parts": ["LMFN", "HeadDeploy head"], "kinds": ["XNNConv2d", "XNNAdd"], "nodes": ["0:1 1:0 1"]}


def test_the_map_reads_back():
    modules = read_module_map(GOOD)
    assert modules.parts == (("", "LMFN"), ("head", "HeadDeploy"))
    assert modules.delegates == ((("XNNConv2d", 1), ("XNNAdd", 0), ("XNNAdd", -1)),)


@pytest.mark.parametrize("change, message", [
    ({"version": 2}, "modules.version must be 1"),
    ({"version": True}, "modules.version must be 1"),
    ({"parts": ["HeadDeploy head; rm -rf"]}, "modules.parts must be a list of strings"),
    ({"parts": "LMFN"}, "modules.parts must be a list of strings"),
    ({"kinds": [3]}, "modules.kinds must be a list of strings"),
    ({"nodes": "0:1"}, "modules.nodes must be a list of strings"),
    ({"nodes": ["0:7"]}, "names no kind or part"),
    ({"nodes": ["5"]}, "names no kind or part"),
    ({"nodes": ["x:y"]}, "names no kind or part"),
])
def test_a_malformed_map_is_refused(change, message):
    with pytest.raises(ModuleMapError, match=message):
        read_module_map({**GOOD, **change})


def test_a_malformed_map_in_a_sidecar_is_one_line(tmp_path, capsys, fixed_pte):
    import json
    import shutil

    _, result = fixed_pte
    pte = tmp_path / "m.pte"
    shutil.copy(result.path, pte)
    sidecar = json.loads(result.manifest_path.read_text())
    sidecar["delegation"]["modules"]["nodes"] = ["99"]
    (tmp_path / "m.pte.json").write_text(json.dumps(sidecar))
    assert bench.main(["--profile", str(pte), "--repeats", "1", "--warmup", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: m.pte's sidecar: modules.nodes has an entry '99' that names no kind or part"


# --- the result against the eager deploy form --------------------------------------------------


def _convolutions_per_part(model: torch.nn.Module, x: torch.Tensor) -> Counter:
    """``(block, module) -> conv2d calls`` of the eager deploy form, counted as it runs: the
    module named is the innermost one of LMFN's own classes, or a direct child of the network,
    around each call (the grouping docs/deployment.md describes), found with forward hooks."""
    from torch.overrides import TorchFunctionMode

    stack: list[tuple[str, torch.nn.Module]] = []
    counts: Counter = Counter()

    def part() -> tuple[str, str]:
        for name, module in reversed(stack):
            if type(module).__module__.startswith("lmfn_edge.model") or (name and "." not in name):
                block = ("(top level)" if not name else ".".join(name.split(".")[:2]) if name.startswith("blocks.")
                         else name.split(".")[0])
                return block, type(module).__name__.removesuffix("Deploy")
        raise AssertionError("a convolution outside the network")

    class Count(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if getattr(func, "__name__", "") == "conv2d":
                counts[part()] += 1
            return func(*args, **(kwargs or {}))

    def enter(name):
        return lambda module, args: stack.append((name, module))  # None: the input stays

    def leave(module, args, out):
        stack.pop()  # returns None: the output stays

    handles = []
    for name, module in model.named_modules():
        handles += [module.register_forward_pre_hook(enter(name)), module.register_forward_hook(leave)]
    with torch.no_grad(), Count():
        model(x)
    for handle in handles:
        handle.remove()
    return counts


def _convolutions_profiled(path) -> tuple[Counter, object]:
    profile = profile_pte(path, threads=1, runs=1, warmup=0)
    counts = Counter()
    for p in profile.parts:
        counts[(p.block, p.module)] += sum(n for kernel, n in p.kernels.items()
                                           if kernel.startswith(("Convolution", "Fully Connected")))
    return +counts, profile


def _check_profile(path, model: torch.nn.Module):
    manifest = read_manifest(path)
    expected = _convolutions_per_part(to_deploy(model).eval(), torch.rand(1, 3, *manifest.shape.example))
    profiled, profile = _convolutions_profiled(path)
    assert not profile.parts_note
    # Every operator is named, and the convolutions of each module are that module's own.
    assert sum(p.calls for p in profile.parts) == sum(op.calls for op in profile.operators)
    assert profiled == expected
    assert len(expected) >= 8  # head, a block and its cell's modules, fuse, tail, upsample
    return profile


def test_fp32_profile_names_each_module_s_convolutions(fixed_pte):
    model, result = fixed_pte  # TINY: every cell type in one building module
    profile = _check_profile(result.path, model)
    assert {("blocks.0", "DSConv"), ("blocks.0", "LKA"), ("head", "Head")} <= {(p.block, p.module) for p in profile.parts}
    text = profile.markdown(top=3)
    by_block = text.split("By block:")[1].split("By module in each block")[0]
    rows = [line.split(" | ") for line in by_block.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [r[0] for r in rows[:2]] == ["| head", "| blocks.0"]  # in the network's order
    assert sum(float(r[3].rstrip(" %|")) for r in rows) == pytest.approx(100, abs=0.1 * len(rows))
    assert "| block | module | calls | ms | share |" in text and "more) | |" in text


def test_int8_profile_names_each_module_s_convolutions(tmp_path, tiny_pt2):
    from lmfn_edge.deployment import export_quantized, load_quantized

    program, info = load_quantized(tiny_pt2)
    result = export_quantized(program, info, "xnnpack", tmp_path / "q.pte", overlap=4)
    model = tiny_model(2, channels=8, num_blocks=1, pattern="L", kernel_size=3)  # the one tiny_pt2 quantized
    _check_profile(result.path, model)


def test_a_program_without_a_map_keeps_to_kernels(tmp_path, capsys, fixed_pte):
    import json
    import shutil

    _, result = fixed_pte
    pte = tmp_path / "old.pte"
    shutil.copy(result.path, pte)
    sidecar = json.loads(result.manifest_path.read_text())
    del sidecar["delegation"]["modules"]
    (tmp_path / "old.pte.json").write_text(json.dumps(sidecar))
    assert bench.main(["--profile", str(pte), "--repeats", "1", "--warmup", "0"]) == 0
    out = capsys.readouterr().out
    assert "| operator | calls | ms | share |" in out and "By module" not in out
    assert "re-export it to see time per module" in out


@pytest.mark.slow  # two full-size lowerings, x4 fp32 and int8 at 16x16 (about 4 min); CI runs -m slow
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_the_shipped_programs_profile_names_each_module_s_convolutions(tmp_path, precision):
    from lmfn_edge import load_model
    from lmfn_edge.export import main as export_main

    path = tmp_path / f"x4_{precision}.pte"
    assert export_main(["--target", "xnnpack", "--precision", precision, "--scale", "4", "--shape", "16x16",
                        "--overlap", "4", "--output", str(path)]) == 0
    profile = _check_profile(path, load_model(4)[0])
    assert {p.block for p in profile.parts} >= {"head", "fuse", "tail", "upsample"} | {f"blocks.{i}" for i in range(8)}
