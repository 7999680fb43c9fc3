"""CPU parsing on real /proc/cpuinfo files from several CPU generations (tests/data/cpuinfo)."""

from __future__ import annotations

from pathlib import Path

import pytest

from envlock.fingerprint.cpu import collect_cpu, isa_summary, parse_proc_cpuinfo
from envlock.runner import FakeRunner
from tests.recorded import recorded_manifest

CPUINFO = Path(__file__).resolve().parent.parent / "data" / "cpuinfo"
LSCPU = CPUINFO.parent / "lscpu"  # lscpu of the same machines, named like their cpuinfo
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
    # TF's oneDNN default is "on" only with AVX512_VNNI/BF16, AVX_VNNI or AMX (docs/causes.md, finding 1):
    assert not (cpu.isa.avx512_vnni or cpu.isa.avx512_bf16 or cpu.isa.avx_vnni or cpu.isa.amx_tile)


def test_this_machine_zen4_has_vnni_and_bf16() -> None:
    cpu = _parse("amd_epyc_zen4_avx512_this_machine.txt")
    assert cpu.vendor == "AuthenticAMD" and cpu.family == 25
    assert cpu.isa.avx512_vnni and cpu.isa.avx512_bf16
    assert cpu.isa.avx_vnni is False


def test_intel_sapphire_rapids_class_has_amx_fp16_and_avx_vnni() -> None:
    # The second machine kind CI runs on (tests/data/README.md): microcode 0x1 (a KVM guest).
    cpu = _parse("intel_xeon_sapphire_rapids_amx_kvm.txt")
    assert (cpu.vendor, cpu.family, cpu.model, cpu.stepping, cpu.microcode) == ("GenuineIntel", 6, 167, 1, "0x1")
    assert cpu.model_name == "Intel(R) Xeon(R) Processor"
    assert (cpu.logical_cores, cpu.physical_cores) == (2, 2)
    assert cpu.isa.avx512_vnni and cpu.isa.avx512_bf16 and cpu.isa.avx512_fp16 and cpu.isa.avx_vnni
    assert cpu.isa.amx_tile and cpu.isa.amx_bf16 and cpu.isa.amx_int8


def test_the_two_ci_machine_kinds_differ_in_what_a_manifest_shows() -> None:
    amd, intel = _parse("amd_epyc_zen4_avx512_this_machine.txt"), _parse("intel_xeon_sapphire_rapids_amx_kvm.txt")
    # Both turn TF's oneDNN on by default (AVX512_VNNI), yet they are different CPUs: vendor, model, ISA.
    assert amd.isa.avx512_vnni and intel.isa.avx512_vnni
    differing = {f for f, v in amd.isa.model_dump().items() if v != getattr(intel.isa, f)}
    assert differing == {"avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8"}
    assert amd.vendor != intel.vendor and amd.microcode != intel.microcode


def _lscpu(path: Path) -> dict[str, str]:
    fields = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


@pytest.mark.parametrize("machine", sorted(p.name for p in LSCPU.glob("*.txt")))
def test_parser_agrees_with_lscpu_on_the_same_machine(machine: str) -> None:
    """util-linux's lscpu reads the same CPU through its own parser: the two must agree."""
    lscpu = _lscpu(LSCPU / machine)
    cpu = _parse(machine)
    assert cpu.vendor == lscpu["Vendor ID"]
    assert (cpu.family, cpu.model, cpu.stepping) == (int(lscpu["CPU family"]), int(lscpu["Model"]),
                                                     int(lscpu["Stepping"]))
    assert cpu.model_name == lscpu["Model name"]
    assert cpu.logical_cores == int(lscpu["CPU(s)"])
    assert cpu.physical_cores == int(lscpu["Core(s) per socket"]) * int(lscpu["Socket(s)"])
    assert cpu.flags == sorted(lscpu["Flags"].split())


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


@pytest.mark.parametrize(("machine", "cpuinfo"), [("amd-epyc-zen4", "amd_epyc_zen4_avx512_this_machine.txt"),
                                                 ("intel-xeon-amx", "intel_xeon_sapphire_rapids_amx_kvm.txt")])
def test_a_recorded_machine_substituted_for_the_host_gives_its_manifest(machine: str, cpuinfo: str) -> None:
    """The collector, fed that machine's /proc/cpuinfo at the runner seam, gives what envlock recorded there."""
    recorded = recorded_manifest(machine).cpu
    collected = collect_cpu(FakeRunner(files={"/proc/cpuinfo": (CPUINFO / cpuinfo).read_text()}))
    assert collected.model_dump(exclude={"affinity"}) == recorded.model_dump(exclude={"affinity"})
