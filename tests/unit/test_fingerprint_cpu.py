"""CPU parsing on real /proc/cpuinfo files from several CPU generations (tests/data/cpuinfo)."""

from __future__ import annotations

from pathlib import Path

import pytest

from envlock.fingerprint.cpu import collect_cpu, isa_summary, parse_proc_cpuinfo
from envlock.runner import FakeRunner

CPUINFO = Path(__file__).resolve().parent.parent / "data" / "cpuinfo"
ALL_FILES = sorted(CPUINFO.glob("*.txt"))


def _parse(name: str):
    return parse_proc_cpuinfo((CPUINFO / name).read_text())


def test_haswell_avx2_only_with_hyperthreads() -> None:
    cpu = _parse("intel_haswell_i7_4800mq_avx2.txt")
    assert (cpu.vendor, cpu.family, cpu.model, cpu.stepping) == ("GenuineIntel", 6, 60, 3)
    assert cpu.model_name == "Intel(R) Core(TM) i7-4800MQ CPU @ 2.70GHz"
    assert cpu.microcode == "0x1c"
    assert (cpu.logical_cores, cpu.physical_cores) == (8, 4)
    assert cpu.isa.avx2 and cpu.isa.fma and cpu.isa.f16c
    assert cpu.isa.avx512f is False and cpu.isa.avx512_vnni is False and cpu.isa.amx_tile is False


def test_cascade_lake_avx512_without_vnni_exposed() -> None:
    cpu = _parse("intel_cascadelake_xeon_8259cl_avx512_aws_t3.txt")
    assert (cpu.family, cpu.model, cpu.stepping, cpu.microcode) == (6, 85, 7, "0x5003901")
    assert (cpu.logical_cores, cpu.physical_cores) == (2, 1)  # two hyperthreads of one core
    assert cpu.isa.avx512f and cpu.isa.avx512bw and cpu.isa.avx512vl and cpu.isa.avx512dq and cpu.isa.avx512cd
    # TF's oneDNN default is "on" only with AVX512_VNNI/BF16, AVX_VNNI or AMX (determinism-notes trap 1):
    assert not (cpu.isa.avx512_vnni or cpu.isa.avx512_bf16 or cpu.isa.avx_vnni or cpu.isa.amx_tile)


def test_this_machine_zen4_has_vnni_and_bf16() -> None:
    cpu = _parse("amd_epyc_zen4_avx512_this_machine.txt")
    assert cpu.vendor == "AuthenticAMD" and cpu.family == 25
    assert cpu.isa.avx512_vnni and cpu.isa.avx512_bf16
    assert cpu.isa.avx_vnni is False


def test_hypervisor_hidden_fma_is_reported_as_missing() -> None:
    cpu = _parse("amd_ryzen7_2700x_avx2_kvm.txt")
    assert cpu.isa.avx2 is True
    assert cpu.isa.fma is False
    assert cpu.logical_cores == 1  # only processor 0 was posted; we report what the text says


def test_arm64_features_and_vendor() -> None:
    cpu = _parse("arm64_apple_silicon_linux_vm.txt")
    assert cpu.vendor == "Apple"
    assert cpu.family == 8
    assert cpu.model_name is None  # aarch64 cpuinfo has no model name: unknown, not a made-up string
    assert cpu.microcode is None
    assert (cpu.logical_cores, cpu.physical_cores) == (4, 4)
    assert cpu.isa.neon is True and cpu.isa.sve is False
    assert cpu.isa.avx2 is False
    assert "asimd" in cpu.flags


def test_armv7_with_hardware_trailer() -> None:
    cpu = _parse("armv7_raspberry_pi2_bcm2709.txt")
    assert cpu.vendor == "ARM"
    assert cpu.model_name == "ARMv7 Processor rev 5 (v7l)"
    assert (cpu.family, cpu.model, cpu.stepping) == (7, 0xC07, 5)
    assert cpu.logical_cores == 4
    assert cpu.isa.neon is True


@pytest.mark.parametrize("path", ALL_FILES, ids=[p.stem for p in ALL_FILES])
def test_flags_are_sorted_unique_and_match_the_text(path: Path) -> None:
    text = path.read_text()
    cpu = parse_proc_cpuinfo(text)
    assert cpu.flags == sorted(set(cpu.flags))
    line = next(ln for ln in text.splitlines() if ln.lower().startswith(("flags", "features")))
    assert set(cpu.flags) == set(line.split(":", 1)[1].split())
    assert cpu.vendor is not None and cpu.logical_cores


@pytest.mark.parametrize("text", ["", "garbage without colons\n", "processor\t: 0\n", "flags : \n\n\n"])
def test_unknown_is_none_not_a_crash(text: str) -> None:
    cpu = parse_proc_cpuinfo(text)
    assert cpu.vendor is None and cpu.model_name is None and cpu.microcode is None
    assert cpu.flags == []
    assert all(value is None for value in cpu.isa.model_dump().values())
    assert "unknown" not in cpu.model_dump_json().lower()


@pytest.mark.parametrize("path", ALL_FILES, ids=[p.stem for p in ALL_FILES])
def test_truncated_files_do_not_crash(path: Path) -> None:
    text = path.read_text()
    cpu = parse_proc_cpuinfo(text[: len(text) // 3])
    assert cpu.flags == sorted(set(cpu.flags))


def test_isa_summary_knows_every_field() -> None:
    assert all(v is None for v in isa_summary([]).model_dump().values())
    assert all(v is False for v in isa_summary(["fpu"]).model_dump().values())


def test_collect_reads_through_the_runner() -> None:
    text = (CPUINFO / "intel_haswell_i7_4800mq_avx2.txt").read_text()
    cpu = collect_cpu(FakeRunner(files={"/proc/cpuinfo": text}))
    assert cpu.model == 60
    assert cpu.affinity is None or cpu.affinity == sorted(cpu.affinity)


def test_py_cpuinfo_fallback_on_a_real_reading() -> None:
    # py-cpuinfo's get_cpu_info() on this machine (takes ~1.4 s there, hence only a fallback).
    import json

    from envlock.fingerprint.cpu import from_py_cpuinfo

    raw = json.loads((CPUINFO.parent / "py_cpuinfo" / "amd_epyc_zen4_this_machine.json").read_text())
    cpu = from_py_cpuinfo(raw)
    proc = _parse("amd_epyc_zen4_avx512_this_machine.txt")
    assert (cpu.vendor, cpu.family, cpu.model, cpu.stepping) == (proc.vendor, proc.family, proc.model, proc.stepping)
    assert cpu.flags == sorted(set(raw["flags"]))
    # py-cpuinfo spells some flags differently ("avx512vnni"); the ISA summary must agree anyway.
    assert cpu.isa == proc.isa


def test_collect_falls_back_to_py_cpuinfo_without_proc(monkeypatch: pytest.MonkeyPatch) -> None:
    import json
    import sys
    import types

    raw = json.loads((CPUINFO.parent / "py_cpuinfo" / "amd_epyc_zen4_this_machine.json").read_text())
    monkeypatch.setitem(sys.modules, "cpuinfo", types.SimpleNamespace(get_cpu_info=lambda: raw))
    cpu = collect_cpu(FakeRunner())
    assert cpu.model_name == raw["brand_raw"]
