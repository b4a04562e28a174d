"""ExecuTorch programs on emulated ARM cores: ``pte_runner`` (the repository's ``pte_runner/``)
cross-built for aarch64 Linux and run under QEMU user-mode emulation, with no torch inside.

:func:`environment` finds or builds what that needs (cached; :data:`CACHE`), :func:`run_pte`
runs one program on one :data:`CPUS` model and returns its output and the guest instructions
one forward pass executed (QEMU 7.2's plugin interface, ``pte_runner/insn_count.c``).
docs/deployment.md ("ARM cores under emulation") has what the numbers mean and what they do not.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import LmfnEdgeError, UsageError

__all__ = ["CACHE", "CPUS", "ArmEnvironment", "ArmError", "ArmRun", "Cpu", "environment", "run_pte"]

CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lmfn_edge" / "arm"
SOURCES = Path(__file__).resolve().parents[2] / "pte_runner"
SYSROOT = Path("/usr/aarch64-linux-gnu")
MARKER_LINE = re.compile(r"^insns run(\d+) (\d+)$", re.M)
RUN_LINE = re.compile(r"^run (\d+): ([0-9.]+) ms$", re.M)
SHAPE_LINE = re.compile(r"^output shape: ([0-9,]+)$", re.M)


class ArmError(LmfnEdgeError):
    """The emulated run failed (the runner's or QEMU's message is attached)."""


@dataclass(frozen=True)
class Cpu:
    """An emulated core: the QEMU ``-cpu`` model, which QEMU runs it, what its int8 path is."""

    name: str
    qemu_cpu: str
    int8_path: str
    qemu: str = "7"  # "7": the system qemu-aarch64 (Debian 12, takes plugins); "10": backports, no plugins


CPUS = {
    "a72": Cpu("a72", "cortex-a72", "NEON (ARMv8.0, no dot product)"),
    "a76": Cpu("a76", "cortex-a76", "dot product (ARMv8.2 sdot)"),
    "i8mm": Cpu("i8mm", "max,sme=off", "int8 matrix multiply (QEMU 7.2 max without SME: SVE2, dotprod, i8mm)"),
    "sme2": Cpu("sme2", "max", "SME2 (QEMU 10 max)", qemu="10"),
    # QEMU 7.2's max with its SME left on: int8 programs come out wrong there (docs/deployment.md,
    # "ARM cores under emulation"); kept to show it, not for parity.
    "sme": Cpu("sme", "max", "SME (QEMU 7.2 max)"),
}


@dataclass
class ArmEnvironment:
    """Paths of the runner, the plugin, the sysroot and the QEMU binaries found."""

    runner: Path
    plugin: Path
    qemu: dict[str, Path] = field(default_factory=dict)  # "7" / "10" -> qemu-aarch64

    def qemu_for(self, cpu: Cpu) -> Path:
        if cpu.qemu not in self.qemu:
            how = ("QEMU 10 from bookworm-backports, unpacked with: python -m lmfn_edge.arm --setup --cpus sme2"
                   if cpu.qemu == "10" else "apt-get install qemu-user")
            raise UsageError(f"CPU model {cpu.name} needs {how}")
        return self.qemu[cpu.qemu]


def _sources_stamp() -> str:
    import hashlib

    digest = hashlib.sha256()
    for name in ("pte_runner.cpp", "insn_count.c", "build.sh"):
        digest.update((SOURCES / name).read_bytes())
    return digest.hexdigest()


def _qemu7() -> Path | None:
    found = shutil.which("qemu-aarch64")
    if not found:
        return None
    version = subprocess.run([found, "--version"], capture_output=True, text=True).stdout
    # The plugin speaks API version 1 (QEMU 6.0 to 8.1) and needs the dynamic build.
    return Path(found) if re.search(r"version [678]\.", version) else None


def _unpack_qemu10(cache: Path, say) -> Path:
    """QEMU 10's qemu-aarch64 from bookworm-backports' qemu-user .deb, unpacked into ``cache``
    (not installed: the system QEMU 7.2 stays, for the plugin)."""
    target = cache / "qemu10" / "qemu-aarch64"
    if target.exists():
        return target
    for tool in ("apt-get", "dpkg-deb"):
        if not shutil.which(tool):
            raise UsageError(f"unpacking QEMU 10 needs {tool} (Debian)")
    say("fetching QEMU 10 (qemu-user from bookworm-backports)")
    with tempfile.TemporaryDirectory() as tmp:
        got = subprocess.run(["apt-get", "download", "-t", "bookworm-backports", "qemu-user"], cwd=tmp,
                             capture_output=True, text=True)
        debs = list(Path(tmp).glob("qemu-user_*.deb"))
        if got.returncode or not debs:
            raise UsageError("apt-get download -t bookworm-backports qemu-user failed (add bookworm-backports to "
                             f"the apt sources and apt-get update): {_first_line(got.stderr)}")
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), tmp + "/x"], check=True, capture_output=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        shutil.copy2(Path(tmp) / "x/usr/bin/qemu-aarch64", partial)
        partial.replace(target)
    return target


def environment(cache: Path = CACHE, want_qemu10: bool = False, say=lambda line: None) -> ArmEnvironment:
    """The emulated ARM environment, built into ``cache`` the first time (``pte_runner/build.sh``:
    the aarch64 wheel, the runner, the plugin) and again whenever their sources change."""
    if not SOURCES.is_dir():
        raise UsageError(f"the runner's sources are not here ({SOURCES}): the ARM command needs a source checkout")
    if not SYSROOT.is_dir() or not shutil.which("aarch64-linux-gnu-g++"):
        raise UsageError("the aarch64 C library and compiler are missing: apt-get install g++-aarch64-linux-gnu")
    qemu7 = _qemu7()
    if qemu7 is None:
        raise UsageError("no QEMU 6.x-8.x qemu-aarch64 on PATH (the dynamic build, for the instruction-count "
                         "plugin): apt-get install qemu-user")
    cache.mkdir(parents=True, exist_ok=True)
    stamp, stamp_file = _sources_stamp(), cache / "build.stamp"
    runner, plugin = cache / "pte_runner", cache / "libinsn_count.so"
    if not (runner.exists() and plugin.exists() and stamp_file.exists() and stamp_file.read_text() == stamp):
        say(f"building pte_runner and the QEMU plugin into {cache}")
        built = subprocess.run(["bash", str(SOURCES / "build.sh"), str(cache)], capture_output=True, text=True,
                               env={**os.environ, "PYTHON": sys.executable})
        if built.returncode:
            raise ArmError(f"pte_runner/build.sh failed: {_first_line(built.stderr, last=True)}")
        stamp_file.write_text(stamp)
    qemu = {"7": qemu7}
    if want_qemu10:
        qemu["10"] = _unpack_qemu10(cache, say)
    elif (cache / "qemu10" / "qemu-aarch64").exists():
        qemu["10"] = cache / "qemu10" / "qemu-aarch64"
    return ArmEnvironment(runner, plugin, qemu)


@dataclass
class ArmRun:
    output: np.ndarray  # float32, the program's output 0
    instructions: int | None  # guest instructions of the last forward pass (None: not counted)
    ms: list[float]  # emulated wall time of each forward pass (says nothing about a device)


def run_pte(env: ArmEnvironment, pte: str | Path, x: np.ndarray, cpu: Cpu, threads: int = 1, runs: int = 2,
            count: bool = True, timeout: float = 900) -> ArmRun:
    """Run ``pte`` on ``x`` (float32 NCHW) on the emulated ``cpu``: the last of ``runs`` forward
    passes' output and, with ``count`` (QEMU 7 models only), its instruction count. The first
    pass pays one-off costs, so counts come from the last (they repeat exactly from the second)."""
    x = np.ascontiguousarray(x, dtype="<f4")
    count = count and cpu.qemu == "7"
    with tempfile.TemporaryDirectory(prefix="lmfn_arm_") as tmp:
        src, dst = Path(tmp) / "in.f32", Path(tmp) / "out.f32"
        x.tofile(src)
        cmd = [str(env.qemu_for(cpu))]
        if count:
            cmd += ["-plugin", str(env.plugin), "-d", "plugin"]
        cmd += ["-cpu", cpu.qemu_cpu, "-L", str(SYSROOT), str(env.runner), "--model", str(pte),
                "--input", str(src), "--shape", ",".join(map(str, x.shape)), "--output", str(dst),
                "--runs", str(runs), "--threads", str(threads)]
        if count:
            cmd.append("--markers")
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise ArmError(f"{cpu.name}: the emulated run took over {timeout:.0f} s") from exc
        if done.returncode:
            raise ArmError(f"{cpu.name}: pte_runner failed (exit {done.returncode}): "
                           f"{_first_line(done.stderr, last=True) or _first_line(done.stdout, last=True)}")
        counts = {int(run): int(n) for run, n in MARKER_LINE.findall(done.stderr)}
        ms = [float(t) for _, t in RUN_LINE.findall(done.stdout)]
        shape = SHAPE_LINE.search(done.stdout)
        if shape is None:
            raise ArmError(f"{cpu.name}: pte_runner printed no output shape")
        output = np.fromfile(dst, dtype="<f4").reshape([int(d) for d in shape.group(1).split(",")])
    return ArmRun(output, counts.get(runs - 1) if count else None, ms)


def _first_line(text: str, last: bool = False) -> str:
    lines = [line for line in (text or "").splitlines() if line.strip() and "cpuinfo" not in line]
    return (lines[-1] if last else lines[0]).strip() if lines else ""
