"""Every option that takes a value: --repeat, --probes, --tolerance, --listen, --fingerprint-every
(and the other durations), and the files envlock WRITES: capture -o, verify --report."""

from __future__ import annotations

import ipaddress
import os
import re
import stat
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from envlock.daemon.config import parse_duration, parse_listen
from envlock.errors import BadInputError
from tests.fuzz.helpers import CHEAP_PROBE, examples, invoke, run_cli
from tests.helpers import REFERENCE_GOLDEN

# Text that option parsers get wrong: separators, signs, exponents, non-ASCII digits, controls.
tricky_text = st.one_of(
    st.text(max_size=20),
    st.text(alphabet="0123456789_-+.eEx:,[] \t\n\x00١２", max_size=12),
    st.sampled_from(["19_145", "１２３", "٣", "-1", "0", "1e9", "9" * 40, "nan", "inf", "0x10", " 5", "5 ",
                     "2\n", "1_0", "+3", "", "\x1b[2J", "ulp:-1", "ulp:1e3", "ulp:" + "9" * 30, "ULP:3"]),
)
probe_names = st.lists(st.sampled_from([CHEAP_PROBE, "gpu.conv2d", "gpu.cpu_vs_gpu"]) | st.text(max_size=15),
                       min_size=0, max_size=3).map(",".join)


@examples(60)
@given(repeat=tricky_text, probes=probe_names, tolerance=tricky_text)
def test_verify_options(repeat: str, probes: str, tolerance: str) -> None:
    if any(name and name not in (CHEAP_PROBE, "gpu.conv2d", "gpu.cpu_vs_gpu") for name in probes.split(",")):
        pass  # an unknown name must be refused before any probe runs
    elif not probes.strip(", "):
        probes = CHEAP_PROBE  # never the whole suite: that would start TensorFlow
    invoke(["verify", str(REFERENCE_GOLDEN), "--repeat", repeat, "--probes", probes, "--tolerance", tolerance])


@examples(40)
@given(option=st.sampled_from(["--listen", "--fingerprint-every", "--verify-every", "--verify-timeout"]),
       value=tricky_text)
def test_watch_options(tmp_path_factory: pytest.TempPathFactory, option: str, value: str) -> None:
    missing = tmp_path_factory.getbasetemp() / "no-such-golden.json"
    invoke(["watch", "--golden", str(missing), option, value])  # never binds: the golden is missing


_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}"
                       r"[A-Za-z0-9])?)*$")


@examples(200)
@given(host=st.sampled_from(["127.0.0.1", "[::1]", "localhost", "0.0.0.0", ""])  # noqa: S104 - parsed, never bound
       | st.text(max_size=12), port=tricky_text)
def test_listen_accepts_only_what_it_can_bind_exactly(host: str, port: str) -> None:
    value = f"{host}:{port}"
    try:
        parsed_host, parsed_port = parse_listen(value)
    except BadInputError as exc:
        assert "\n" not in str(exc), f"--listen {value!r}: a multi-line message"
        return
    assert re.fullmatch(r"[0-9]{1,5}", port), f"--listen {value!r}: accepted port text {port!r} (not plain digits)"
    assert 0 <= parsed_port <= 65535
    try:
        ipaddress.ip_address(parsed_host)
    except ValueError:
        assert _HOSTNAME.match(parsed_host), f"--listen {value!r}: accepted host {parsed_host!r}"


@examples(200)
@given(text=tricky_text | st.from_regex(r"\A[0-9]{1,25}(ms|s|m|h|d)?\Z"))
def test_durations_never_overflow_a_timestamp(text: str) -> None:
    try:
        seconds = parse_duration(text, option="--fingerprint-every")
    except BadInputError as exc:
        assert "\n" not in str(exc), f"{text!r}: a multi-line message"
        return
    # the daemon schedules with monotonic deadlines and logs wall-clock times of the next check
    try:
        datetime.fromtimestamp(time.time() + seconds, tz=timezone.utc)
    except (OverflowError, ValueError, OSError) as exc:
        raise AssertionError(f"--fingerprint-every {text!r} accepted ({seconds} s) but overflows a "
                             f"timestamp: {exc}") from None


# ---------------------------------------------------------------- what envlock writes


def _make_target(kind: str, directory: Path) -> Path:
    regular = directory / "existing.json"
    regular.write_text("{}")
    targets = {
        "new file": directory / "new.json",
        "existing file": regular,
        "directory": directory,
        "missing parent": directory / "missing" / "x.json",
        "name 255 chars": directory / ("n" * 250 + ".json"),
        "name 256 chars": directory / ("n" * 251 + ".json"),
        "name with newline": directory / "a\nb\x1b[31m.json",
    }
    if kind in targets:
        return targets[kind]
    path = directory / "target"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "char device":
        if os.geteuid() != 0:
            pytest.skip("making a device node needs root")
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a /dev/null of our own
    elif kind == "symlink to file":
        path.symlink_to(regular)
    elif kind == "symlink to fifo":
        os.mkfifo(directory / "fifo")
        path.symlink_to(directory / "fifo")
    elif kind == "dangling symlink":
        path.symlink_to(directory / "nowhere")
    elif kind == "symlink loop":
        path.symlink_to(path)
    return path


TARGET_KINDS = ["new file", "existing file", "directory", "missing parent", "name 255 chars", "name 256 chars",
                "name with newline", "fifo", "char device", "symlink to file", "symlink to fifo", "dangling symlink",
                "symlink loop"]


def _node(path: Path) -> int | None:
    try:
        return stat.S_IFMT(os.lstat(path).st_mode)
    except OSError:
        return None


@pytest.mark.parametrize("command", ["capture -o", "verify --report"])
@pytest.mark.parametrize("kind", TARGET_KINDS)
def test_written_targets(tmp_path: Path, command: str, kind: str) -> None:
    target = _make_target(kind, tmp_path)
    before = _node(target)
    if command == "capture -o":
        args = ["capture", "--no-tf", "-o", str(target)]
    else:
        args = ["verify", str(REFERENCE_GOLDEN), "--probes", CHEAP_PROBE, "--report", str(target)]
    code, _, _ = run_cli(args, timeout=60)
    # A verify of the skipped-only cheap probe compares nothing: NOTHING VERIFIED, exit 3 (report written).
    written = (0, 1) if command == "capture -o" else (3,)
    if kind in ("new file", "existing file", "name 255 chars", "symlink to file"):
        assert code in written, f"{command} {kind}: exit {code}"
        assert target.exists() and target.stat().st_size > 0, f"{command} {kind}: nothing written"
    if before not in (None, stat.S_IFREG, stat.S_IFDIR):
        assert _node(target) == before, f"{command} onto a {kind}: the node was replaced"
