"""What number formats this machine runs fast, and the one rule that turns a ``bf16`` / ``dtype`` setting into a
choice: ``auto`` takes bfloat16 where the hardware multiplies it natively (a CUDA device that supports it, or a CPU
with AMX or AVX512-BF16, where a bf16 matmul runs ~6x float32's), float32 elsewhere; asking for bfloat16 where
the hardware lacks it is an error naming the key, because emulated bf16 runs several times slower than float32.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nat_ray.errors import InputError

# /proc/cpuinfo flags of the instructions that multiply bf16 natively (Intel Sapphire Rapids+, AMD Zen 4+)
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@dataclass(frozen=True)
class Precision:
    bf16: bool
    reason: str  # said in the log: which was chosen and why

    @property
    def name(self) -> str:
        return "bfloat16" if self.bf16 else "float32"


def cpu_bf16_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> list[str]:
    """The native-bf16 instruction sets this CPU reports (none where /proc/cpuinfo does not exist)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return []
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    return [f for f in CPU_BF16_FLAGS if f in flags]


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name ("AMD EPYC", "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz"), or what Python knows."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, Any]:
    """This machine as a result's reader needs it: runs of one study can span machines (a resumed stage, a copied run
    folder), and the same config computes in bf16 on one CPU and float32 on another."""
    return {"cpu": cpu_model(cpuinfo), "cpus": os.cpu_count(), "bf16": cpu_bf16_flags(cpuinfo)}


def bf16_support(cuda: bool, cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[bool, str]:
    """Whether the device the work runs on has native bf16, and what was found."""
    if cuda:
        import torch

        ok = torch.cuda.is_bf16_supported()
        return ok, f"CUDA device {'supports' if ok else 'without'} bf16"
    flags = cpu_bf16_flags(cpuinfo)
    if flags:
        return True, f"CPU has {' and '.join(flags)}"
    return False, "CPU has neither AMX nor AVX512-BF16"


def resolve_bf16(setting: str, key: str, cuda: bool, cpuinfo: Path = Path("/proc/cpuinfo")) -> Precision:
    """``setting`` is ``auto`` | ``on`` | ``off`` (or ``auto`` | ``bfloat16`` | ``float32``) of the config ``key``."""
    if setting in ("off", "float32"):
        return Precision(False, f"{key}: {setting}")
    ok, found = bf16_support(cuda, cpuinfo)
    if setting in ("on", "bfloat16"):
        if not ok:
            raise InputError(
                f"{key}: {setting}, but the {found}: bfloat16 would be emulated, several times slower than float32 "
                f"(set {key}: auto, which picks float32 here)"
            )
        return Precision(True, f"{key}: {setting} ({found})")
    if setting != "auto":
        raise InputError(f"{key}: {setting!r} is not one of auto, on, off, bfloat16, float32")
    return Precision(ok, f"{key}: auto -> {'bfloat16' if ok else 'float32'} ({found})")
