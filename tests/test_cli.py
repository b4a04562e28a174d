"""What the command lines share: quiet output by default, the same flags everywhere, help texts
a terminal shows as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from lmfn_edge import arm, bench, evaluate, export, info, upscale, verify_coreml
from quantization import numerics, ptq, qat, shipped_numerics
from training import loop_speed, release, skimage_photos, throughput, train

ROOT = Path(__file__).resolve().parents[1]
PARSERS = {
    "arm": arm.build_parser, "export": export.build_parser, "upscale": upscale.build_parser, "evaluate": evaluate.build_parser,
    "bench": bench.build_parser, "verify_coreml": verify_coreml.build_parser, "info": info.build_parser,
    "train": train.build_parser, "release": release.build_parser, "skimage_photos": skimage_photos.build_parser,
    "throughput": throughput.build_parser, "qat": qat.build_parser, "ptq": ptq.build_parser,
    "numerics": numerics.build_parser, "loop_speed": loop_speed.build_parser,
    "shipped_numerics": shipped_numerics.build_parser,
}
# The export command's own lines; anything else on its stderr is third-party noise.
OWN_LINES = re.compile(r"^(exporting .*|torch\.export of the deploy form at .*|converting to Core ML .*|"
                       r"lowering to .*|installed lmfn\.pte .*)$")


def _export(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "lmfn_edge.export", "--target", "coreml", "--random-init", "--pattern", "L",
           "--kernel-size", "3", "--shape", "16x16", "--overlap", "4", "--output", str(tmp_path / "m.mlpackage"),
           *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_export_prints_its_own_lines_only_and_verbose_shows_the_rest(tmp_path):
    quiet = _export(tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.startswith(f"wrote {tmp_path / 'm.mlpackage'} and m.mlpackage.json in ")
    lines = [line for line in quiet.stderr.splitlines() if line.strip()]
    assert lines and all(OWN_LINES.match(line) for line in lines), quiet.stderr
    verbose = _export(tmp_path, "--verbose")
    assert verbose.returncode == 0, verbose.stderr
    noise = [line for line in verbose.stderr.splitlines() if line.strip() and not OWN_LINES.match(line)]
    assert noise, "--verbose should show the third-party output quiet mode hides"


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_help_is_plain_text_with_shared_flags(name):
    parser = PARSERS[name]()
    text = parser.format_help()
    assert not re.search(r"``|:(func|class|mod|meth):`", text), text
    flags = {s for a in parser._actions for s in a.option_strings}
    assert {"-v", "--verbose"} <= flags
    assert not {"--output-json", "--json-out", "--out"} & flags  # JSON output is --json everywhere
    for action in parser._actions:
        if "--scale" in action.option_strings:
            assert tuple(action.choices) == (2, 3, 4)
        if "--target" in action.option_strings:
            assert action.choices is not None
        if "--lr" in action.option_strings or "--learning-rate" in action.option_strings:
            pytest.fail("the learning rate is a config field (learning_rate), set with --set")
