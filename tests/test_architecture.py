"""The code's shape: layer and cycle rules (import-linter contracts in pyproject.toml), no private
names reached across packages, and an ``import lmfn_edge`` that stays cheap."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("lmfn_edge", "training", "quantization")


def test_import_linter_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_no_private_names_imported_from_another_package():
    offenders = []
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.ImportFrom) or node.level or not node.module:
                    continue
                top = node.module.split(".")[0]
                if top in PACKAGES and top != package:
                    offenders += [f"{path.relative_to(ROOT)}: {node.module}.{a.name}" for a in node.names
                                  if a.name.startswith("_")]
    assert not offenders, offenders


def test_import_lmfn_edge_loads_no_export_stack():
    code = ("import sys, lmfn_edge, lmfn_edge.manifest, lmfn_edge.runtime; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'executorch', 'coremltools', 'torchao', "
            "'onnxruntime', 'training', 'quantization'}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
