"""Every loader and every command that reads a file, fed arbitrary bytes, arbitrary JSON and
resealed mutations of a real golden and manifest. In-process (Typer's runner) for speed; the
few subprocess examples at the end check the real entry point with time and memory limits."""

from __future__ import annotations

import itertools
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from envlock.errors import EnvlockError
from tests.fuzz.helpers import (
    CHEAP_PROBE,
    FuzzInput,
    NoTensorflow,
    any_file,
    arbitrary_bytes,
    examples,
    golden_mutations,
    invoke,
    manifest_mutations,
    run_cli,
    uncaught,
)

_counter = itertools.count()


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="envlock-fuzz-") as tmp:
        yield Path(tmp)


def _file(workdir: Path, content: FuzzInput | bytes, name: str = "input.json") -> Path:
    directory = workdir / f"ex{next(_counter)}"
    directory.mkdir()
    path = directory / name
    path.write_bytes(content.content if isinstance(content, FuzzInput) else content)
    return path


# ---------------------------------------------------------------- the loaders, directly


@examples(150)
@given(content=any_file)
def test_loaders_raise_only_one_line_envlock_errors(workdir: Path, content: FuzzInput) -> None:
    from envlock.golden import load_any_manifest, load_golden
    from envlock.models import load_manifest

    path = _file(workdir, content)
    for loader in (load_golden, load_manifest, load_any_manifest):
        try:
            loader(path)
        except EnvlockError as exc:
            assert "\n" not in str(exc), f"{loader.__name__}: a multi-line message: {exc!s:.500}"
            assert exc.exit_code == 2, f"{loader.__name__}: a bad file must exit 2, not {exc.exit_code}: {exc}"
        except Exception as exc:  # noqa: BLE001 - anything else escaping a loader is the failure
            raise uncaught(exc, loader.__name__) from None


@examples(100)
@given(content=any_file)
def test_fleet_reads_any_file_as_a_row_or_one_line(workdir: Path, content: FuzzInput) -> None:
    from envlock.fleet.files import fleet_report
    from envlock.fleet.render import render_fleet

    path = _file(workdir, content)
    try:
        render_fleet(fleet_report([path, path]))  # the picture renders, whatever the file held
    except EnvlockError as exc:
        assert "\n" not in str(exc) and exc.exit_code == 2, f"fleet: {exc!s:.500}"
    except Exception as exc:  # noqa: BLE001 - anything else escaping is the failure
        raise uncaught(exc, "fleet") from None


@examples(60)
@given(content=st.one_of(golden_mutations, arbitrary_bytes))
def test_lockdown_golden_never_exports_what_is_not_allow_listed(workdir: Path, content: FuzzInput) -> None:
    """lockdown(golden=) up to the TF import (TF is kept out: importing it is the point it stops)."""
    from envlock.environ import is_allowed
    from envlock.locking import lockdown

    path = _file(workdir, content)
    before = dict(os.environ)
    assert "tensorflow" not in sys.modules, "the fuzz layer must run without TensorFlow imported"
    blocker = NoTensorflow()
    sys.meta_path.insert(0, blocker)  # type: ignore[arg-type]
    try:
        lockdown(golden=path)
    except EnvlockError as exc:
        assert "\n" not in str(exc) and exc.exit_code == 2, f"bad golden: {exc.exit_code} {exc!s:.300}"
    except ImportError:
        pass  # the golden was accepted and lockdown reached TensorFlow
    except Exception as exc:  # noqa: BLE001 - anything else escaping lockdown is the failure
        raise uncaught(exc, "lockdown(golden=)") from None
    finally:
        after = dict(os.environ)
        os.environ.clear()
        os.environ.update(before)
        sys.meta_path.remove(blocker)  # type: ignore[arg-type]
    changed = {n for n in set(before) | set(after) if before.get(n) != after.get(n)}
    not_allowed = sorted(n for n in changed if not is_allowed(n))
    assert not not_allowed, f"lockdown(golden=) changed variables outside the allow-list: {not_allowed}"


# ---------------------------------------------------------------- the commands, in process


@examples(80)
@given(a=any_file, b=st.one_of(any_file, manifest_mutations))
def test_diff(workdir: Path, a: FuzzInput, b: FuzzInput) -> None:
    invoke(["diff", str(_file(workdir, a, "a.json")), str(_file(workdir, b, "b.json")), "--json"])


@examples(80)
@given(content=any_file, golden_env=st.booleans())
def test_verify_up_to_the_probes(workdir: Path, content: FuzzInput, golden_env: bool) -> None:
    path = _file(workdir, content)
    args = ["verify", str(path), "--probes", CHEAP_PROBE, "--json", "--report", str(path.parent / "report.json")]
    invoke(args + (["--golden-env"] if golden_env else []))


@examples(40)
@given(content=any_file)
def test_watch_once(workdir: Path, content: FuzzInput) -> None:
    path = _file(workdir, content)
    invoke(["watch", "--golden", str(path), "--once", "--verify-every", "0", "--state-dir", str(path.parent / "st")])


@examples(25)
@given(content=st.one_of(arbitrary_bytes, golden_mutations), requirements=st.none() | st.binary(max_size=300))
def test_build_context_only(workdir: Path, content: FuzzInput, requirements: bytes | None) -> None:
    path = _file(workdir, content)
    args = ["build", "--golden", str(path), "--context-only", str(path.parent / "ctx")]
    if requirements is not None:
        args += ["-r", str(_file(workdir, requirements, "requirements.lock"))]
    # No network: a golden that passes validation gets as far as pip, which must fail fast (exit 3).
    invoke(args, env={"PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                      "ENVLOCK_CACHE_DIR": str(path.parent / "cache")})


# ---------------------------------------------------------------- the real entry point, a few


@examples(6)
@given(a=any_file, b=any_file)
def test_subprocess_diff_and_verify(workdir: Path, a: FuzzInput, b: FuzzInput) -> None:
    first, second = _file(workdir, a, "a.json"), _file(workdir, b, "b.json")
    run_cli(["diff", str(first), str(second)])
    run_cli(["verify", str(first), "--probes", CHEAP_PROBE])
