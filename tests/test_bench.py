"""The bench command's argument errors and table; its timings are produced by running it
(docs/deployment.md), never asserted in tests."""

import pytest

from lmfn_edge import bench
from lmfn_edge.evaluation.latency import to_markdown


def test_unknown_job_is_one_line(capsys):
    assert bench.main(["--jobs", "720p_x4,8k"]) == 2
    assert capsys.readouterr().err.strip() == "error: unknown job 8k; jobs are 720p_x4, tile128, tile64"
    assert bench.main(["--int8-pte", "tile32", "x.pte"]) == 2
    assert "unknown job tile32" in capsys.readouterr().err


def test_int8_program_must_fit_its_job(tmp_path, capsys, fixed_pte):
    _, result = fixed_pte  # an fp32 x2 program with a 24x24 tile
    assert bench.main(["--int8-pte", "tile64", str(tmp_path / "none.pte")]) == 2
    assert "none.pte not found" in capsys.readouterr().err
    assert bench.main(["--int8-pte", "tile64", str(result.path)]) == 2
    err = capsys.readouterr().err
    assert "xnnpack fp32 program" in err and "x2, not x4" in err and "24x24, the job's 64x64" in err


@pytest.mark.parametrize("flag", ["--threads", "--rounds", "--repeats"])
def test_counts_below_one_are_refused_by_the_parser(flag, capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main([flag, "0"])
    assert exc.value.code == 2 and "must be >= 1, got 0" in capsys.readouterr().err


def test_table_shows_ratio_and_output_size():
    results = {"scale": 4, "jobs": {"tile64": {"input": [64, 64], "runtimes": {
        "eager": {"median_ms": 80.0, "speedup_vs_eager": 1.0, "peak_rss_mb": 400.0, "gflops": 5.0},
        "pte_fp32": {"median_ms": 50.0, "speedup_vs_eager": 1.6, "speedup_vs_pte_fp32": 1.0, "peak_rss_mb": 120.0,
                     "artifact_mb": 1.5, "gflops": 8.0},
        "pte_int8-dynamic": {"median_ms": 40.0, "speedup_vs_eager": 2.0, "speedup_vs_pte_fp32": 1.25,
                             "peak_rss_mb": 100.0, "artifact_mb": 0.8, "gflops": 10.0}}}}}
    rows = to_markdown(results).splitlines()
    assert rows[2] == "| tile64 (64x64 -> 256x256) | eager | 80.0 | 1.00x | - | 400 | - | 5.0 |"
    assert rows[3] == "| tile64 (64x64 -> 256x256) | pte_fp32 | 50.0 | 1.60x | 1.00x | 120 | 1.50 | 8.0 |"
    # Each int8 variant is its own row, with its ratio to the fp32 program measured beside it.
    assert rows[4] == "| tile64 (64x64 -> 256x256) | pte_int8-dynamic | 40.0 | 2.00x | 1.25x | 100 | 0.80 | 10.0 |"
    # A run records its CPU (int8 and bf16 speed depend on it), and the table starts with it.
    results.update(threads=2, cpu={"model": "AMD EPYC", "machine": "x86_64", "cores": 2, "features": ["AVX2"]})
    rows = to_markdown(results).splitlines()
    assert rows[0] == "CPU: AMD EPYC (x86_64, 2 cores; AVX2), 2 thread(s)" and rows[4].startswith("| tile64")


def test_peak_rss_is_this_process_s_own():
    # A child started by a parent that holds a large buffer must not report the parent's peak.
    import subprocess
    import sys

    code = ("import numpy, subprocess, sys; a = numpy.ones(400 * 2**20 // 8); "
            "print(subprocess.run([sys.executable, '-c', 'from lmfn_edge.evaluation.latency import peak_rss_mb; "
            "print(peak_rss_mb())'], capture_output=True, text=True).stdout)")
    child_mb = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert 0 < child_mb < 400


def test_profile_lists_the_program_s_operators(tmp_path, capfd, fixed_pte):
    import json

    _, result = fixed_pte
    out = tmp_path / "profile.json"
    assert bench.main(["--profile", str(result.path), "--repeats", "2", "--warmup", "1", "--threads", "1", "--top", "3",
                       "--json", str(out)]) == 0
    captured = capfd.readouterr()
    text = captured.out
    data = json.loads(out.read_text())
    ops = data["operators"]
    # The tiny program's convolutions run as XNNPACK kernels, and every operator call of a run is counted once.
    assert any(op["name"].startswith("Convolution (NHWC, F32)") for op in ops)
    assert data["runs"] == 2 and data["execute_ms"] > 0 and all(op["ms"] >= 0 and op["calls"] >= 1 for op in ops)
    assert sum(op["ms"] for op in ops) <= data["execute_ms"] * 1.05  # operators run inside one execute
    assert f"({len(ops) - 3} more)" in text and "| operator | calls | ms | share |" in text
    assert "cpuinfo" not in captured.err  # third-party lines only with --verbose


def test_dsconv_bound_stand_in_is_a_zero_offset_dsconv():
    """scripts/dsconv_bound.py's stand-in: every DSConv becomes its line conv, which is what a
    DSConv with zero offsets computes away from the borders of its tap axis (it zero-pads where
    DSConv replicates)."""
    import importlib.util
    from pathlib import Path

    import torch

    from helpers import tiny_model
    from lmfn_edge.model.dsconv import DSConv, DSConvDeploy

    path = Path(__file__).resolve().parents[1] / "scripts" / "dsconv_bound.py"
    spec = importlib.util.spec_from_file_location("dsconv_bound", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)

    model = tiny_model(scale=2)
    stand_in = script.line_only(model)
    assert not any(isinstance(m, (DSConv, DSConvDeploy)) for m in stand_in.modules())
    assert sum(isinstance(m, script.LineOnly) for m in stand_in.modules()) == \
        sum(isinstance(m, DSConv) for m in model.modules())
    torch.manual_seed(0)
    x = torch.rand(1, 3, 24, 24)
    assert stand_in(x).shape == model(x).shape

    for morph in (0, 1):
        ds = DSConv(4, 5, kernel_size=5, morph=morph).eval()  # zero-initialised offsets
        torch.nn.init.normal_(ds.line_conv.weight)
        line = script.LineOnly(DSConvDeploy(ds))
        f = torch.rand(1, 4, 12, 12)
        with torch.no_grad():
            want, got = ds(f), line(f)
        interior = (slice(None), slice(None), slice(None), slice(2, -2)) if morph == 0 else \
            (slice(None), slice(None), slice(2, -2), slice(None))
        torch.testing.assert_close(got[interior], want[interior], atol=1e-5, rtol=1e-5)
