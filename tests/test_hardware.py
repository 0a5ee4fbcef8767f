"""bf16 is chosen where the hardware multiplies it natively, and asking for it elsewhere is one error naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from nat_ray.errors import InputError
from nat_ray.hardware import cpu_bf16_flags, resolve_bf16

FLAGS = "flags\t\t: fpu vme sse sse2 avx avx2 avx512f avx512bw {extra}\n"


def _cpuinfo(tmp_path: Path, extra: str) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "cpuinfo"
    path.write_text("processor\t: 0\n" + FLAGS.format(extra=extra) + "\nprocessor\t: 1\n" + FLAGS.format(extra=extra))
    return path


@pytest.mark.parametrize(
    ("extra", "found"),
    [("avx512_bf16", ["avx512_bf16"]), ("amx_bf16 amx_tile avx512_bf16", ["amx_bf16", "avx512_bf16"]), ("", [])],
)
def test_cpu_flags(tmp_path: Path, extra: str, found: list[str]) -> None:
    assert cpu_bf16_flags(_cpuinfo(tmp_path, extra)) == found


def test_auto_picks_bf16_only_where_the_cpu_has_it(tmp_path: Path) -> None:
    fast = resolve_bf16("auto", "train.bf16", cuda=False, cpuinfo=_cpuinfo(tmp_path / "a", "avx512_bf16"))
    assert fast.bf16 and fast.name == "bfloat16" and "avx512_bf16" in fast.reason and "train.bf16: auto" in fast.reason
    slow = resolve_bf16("auto", "policy.dtype", cuda=False, cpuinfo=_cpuinfo(tmp_path / "b", ""))
    assert not slow.bf16 and slow.name == "float32" and "neither AMX nor AVX512-BF16" in slow.reason
    assert not resolve_bf16("off", "train.bf16", cuda=False, cpuinfo=_cpuinfo(tmp_path / "c", "avx512_bf16")).bf16
    assert not resolve_bf16("float32", "policy.dtype", cuda=False).bf16
    assert not resolve_bf16("auto", "train.bf16", cuda=False, cpuinfo=tmp_path / "missing").bf16  # not Linux


@pytest.mark.parametrize(("key", "value"), [("train.bf16", "on"), ("policy.dtype", "bfloat16")])
def test_asking_for_bf16_without_the_hardware_is_one_line_naming_the_key(tmp_path: Path, key: str, value: str) -> None:
    with pytest.raises(InputError) as exc:
        resolve_bf16(value, key, cuda=False, cpuinfo=_cpuinfo(tmp_path, ""))
    message = str(exc.value)
    assert message.startswith(f"{key}: {value}") and "\n" not in message and "emulated" in message
    has = _cpuinfo(tmp_path / "a", "amx_bf16")
    assert resolve_bf16(value, key, cuda=False, cpuinfo=has).bf16


def test_machine_names_the_cpu_its_cores_and_its_bf16(tmp_path: Path) -> None:
    from nat_ray.hardware import machine

    path = _cpuinfo(tmp_path, "avx512_bf16")
    path.write_text("model name\t: AMD EPYC\n" + path.read_text())
    assert machine(path)["cpu"] == "AMD EPYC" and machine(path)["bf16"] == ["avx512_bf16"] and machine(path)["cpus"]
    assert machine(tmp_path / "missing")["cpu"]  # not Linux: what Python knows
