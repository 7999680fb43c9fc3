"""Key files (issue 17 class 7): whatever is passed to --trusted-key or --sign -- arbitrary bytes,
mutations of a real public or private key, or a node that is no plain file -- the loaders raise
only one-line ``BadFileError``s (or load a key), and the commands keep the CLI's properties (exit
code, one line, no traceback). In-process, like test_fuzz_files; no process starts."""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from envlock.errors import BadFileError
from envlock.signing import MAX_KEY_FILE_BYTES, load_signing_key, load_trusted_keys
from tests.fuzz.helpers import CHEAP_PROBE, FuzzInput, examples, invoke
from tests.helpers import DATA_DIR, REFERENCE_GOLDEN, write_keypair

PUBLIC = (DATA_DIR / "keys" / "known_ed25519.pub").read_bytes()
_counter = itertools.count()


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="envlock-fuzz-keys-") as tmp:
        yield Path(tmp)


@pytest.fixture(scope="module")
def private_key(workdir: Path) -> bytes:
    return write_keypair(workdir, "id_ed25519")[0].read_bytes()


def _mutated(base: bytes) -> st.SearchStrategy[FuzzInput]:
    """``base`` cut, with bytes flipped, inserted or repeated: what a damaged or hostile key file holds."""
    cut = st.integers(0, len(base)).map(lambda n: FuzzInput(f"cut at {n}", base[:n]))
    flipped = st.tuples(st.integers(0, len(base) - 1), st.integers(0, 255)).map(
        lambda p: FuzzInput(f"byte {p[0]}={p[1]}", base[:p[0]] + bytes([p[1]]) + base[p[0] + 1:]))
    inserted = st.tuples(st.integers(0, len(base)), st.binary(min_size=1, max_size=40)).map(
        lambda p: FuzzInput(f"insert at {p[0]}", base[:p[0]] + p[1] + base[p[0]:]))
    repeated = st.integers(2, 2000).map(lambda n: FuzzInput(f"{n} copies", base * n))
    return st.one_of(cut, flipped, inserted, repeated)


def _contents(private: bytes) -> st.SearchStrategy[FuzzInput]:
    lines = st.lists(st.sampled_from([b"#", b"", b"ssh-ed25519", b"ssh-rsa", b"AAAA", b"\x00", b"\xff", b"\t",
                                      b"command=\"x\"", b"PRIVATE KEY", PUBLIC.split()[1]]), max_size=8)
    return st.one_of(
        st.binary(max_size=600).map(lambda b: FuzzInput("bytes", b)),
        lines.map(lambda parts: FuzzInput("tokens", b" ".join(parts) + b"\n")),
        _mutated(PUBLIC), _mutated(private),
        st.just(FuzzInput("just over the limit", b"#" * (MAX_KEY_FILE_BYTES + 1))),
    )


def _write(workdir: Path, content: FuzzInput) -> Path:
    path = workdir / f"key{next(_counter)}"
    path.write_bytes(content.content)
    return path


@examples(200)
@given(data=st.data())
def test_key_loaders_raise_only_one_line_bad_file_errors(workdir: Path, private_key: bytes,
                                                         data: st.DataObject) -> None:
    path = _write(workdir, data.draw(_contents(private_key)))
    for loader in (load_signing_key, lambda p: load_trusted_keys([p])):
        try:
            loader(path)
        except BadFileError as exc:
            assert str(exc).isprintable() and str(path) in str(exc), repr(str(exc))


def _special(workdir: Path, kind: str) -> Path:
    """A path to something that is not a plain key file."""
    base = workdir / f"special{next(_counter)}"
    if kind == "directory":
        base.mkdir()
    elif kind == "fifo":
        os.mkfifo(base)
    elif kind == "symlink loop":
        base.symlink_to(base)
    elif kind == "dangling symlink":
        base.symlink_to(workdir / "nowhere")
    elif kind == "sparse 1 GiB":
        with base.open("wb") as handle:
            handle.truncate(1024**3)
    else:  # a device or a /proc file
        return Path(kind)
    return base


SPECIAL = ["directory", "fifo", "symlink loop", "dangling symlink", "sparse 1 GiB", "/dev/zero", "/dev/null",
           "/proc/self/mem", "/proc/self/environ"]
COMMANDS = [
    ["verify", str(REFERENCE_GOLDEN), "--probes", CHEAP_PROBE, "--trusted-key"],
    ["explain", str(REFERENCE_GOLDEN), "--probes", CHEAP_PROBE, "--trusted-key"],
    ["build", "--golden", str(REFERENCE_GOLDEN), "--context-only", "CTX", "--trusted-key"],
    ["capture", "--golden", "-o", "OUT", "--probes", "no.such.probe", "--sign"],
]


@examples(60)
@given(data=st.data(), command=st.sampled_from(COMMANDS))
def test_commands_given_any_key_file_keep_the_cli_properties(workdir: Path, private_key: bytes,
                                                             data: st.DataObject, command: list[str]) -> None:
    kind = data.draw(st.sampled_from(["content", *SPECIAL]))
    key = _write(workdir, data.draw(_contents(private_key))) if kind == "content" else _special(workdir, kind)
    places = {"CTX": str(workdir / f"ctx{next(_counter)}"), "OUT": str(workdir / f"out{next(_counter)}.json")}
    # invoke() asserts: exit code in {0..3}, one line on stderr for exit 2/3, no traceback, bounded time.
    code, _, stderr = invoke([places.get(a, a) for a in command] + [str(key)])
    assert code == 2, stderr  # every key here is unusable, or the golden is unsigned, or the probe unknown
