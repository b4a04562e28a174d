"""Installing an exported program into the Android demo (``android_demo/``)."""

from __future__ import annotations

from pathlib import Path

from ..files import atomic_write_bytes, atomic_write_text
from .lowering import ExportError

__all__ = ["install_android"]


def install_android(result, app_dir: str | Path) -> Path:
    """Copy a fixed-tile .pte and its sidecar into the app's assets as ``lmfn.pte`` / ``lmfn.json``.

    The assets folder is git-ignored: exported programs are never committed.

    Args:
        result: An :class:`~lmfn_edge.deployment.exporter.ExportResult` of an XNNPACK or
            portable program with a square fixed shape.
        app_dir: The Android demo project (the folder holding ``app/``).

    Returns:
        The assets folder.
    """
    manifest = result.manifest
    if manifest.target not in ("xnnpack", "portable") or manifest.tile is None:
        raise ExportError("--android needs --target xnnpack (or portable) with a square fixed --shape")
    app = Path(app_dir) / "app"
    if not app.is_dir():
        raise ExportError(f"{app_dir} is not the Android demo project (no app/ folder)")
    assets = app / "src" / "main" / "assets"
    assets.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(assets / "lmfn.pte", Path(result.path).read_bytes())
    atomic_write_text(assets / "lmfn.json", manifest.replace(artifact="lmfn.pte").to_json())
    return assets
