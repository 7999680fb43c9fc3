"""`envlock build` failure paths: one line and the documented exit code, never a traceback, and
always before the slow work (pip, Docker) when the problem can be seen up front. No pip, no daemon."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import unquote

import docker
import pytest
from typer.testing import CliRunner

from envlock.cli import app
from envlock.errors import (
    BAD_INPUT,
    ENVIRONMENT,
    BadFileError,
    BadInputError,
    DockerUnavailable,
    EnvironmentProblem,
    ImageBuildFailed,
    IntegrityError,
)
from envlock.image import docker_engine, wheelhouse
from envlock.image.build import file_errors, write_context
from envlock.image.data import BaseImage, glibc_for, parse_base_images
from envlock.image.docker_engine import image_id
from envlock.runner import FakeRunner
from tests.helpers import REPO_ROOT, write_golden


def run_build_cli(*args: str, cache: Path) -> tuple[int, list[str], str]:
    result = CliRunner().invoke(app, ["build", *args], env={"ENVLOCK_CACHE_DIR": str(cache)})
    assert "Traceback" not in result.output
    return result.exit_code, result.stderr.strip().splitlines(), result.output


# 1. A golden's environment cannot inject Dockerfile instructions.

@pytest.mark.parametrize(("env", "names"), [
    ({"XLA_FLAGS": "--a\nRUN echo pwned"}, "XLA_FLAGS"),
    ({"XLA_FLAGS": "--a\rRUN echo pwned"}, "XLA_FLAGS"),
    ({"TF_CPP_VMODULE": "a\0b"}, "TF_CPP_VMODULE"),
    ({"BAD NAME=x": "1"}, "BAD NAME=x"),
    ({"X\nRUN echo pwned": "1"}, "RUN echo pwned"),
])
def test_build_refuses_a_golden_that_would_inject_dockerfile_lines(tmp_path: Path, env: dict[str, str],
                                                                    names: str) -> None:
    golden = tmp_path / "golden.json"
    write_golden(golden, env=env)
    cache = tmp_path / "cache"
    code, lines, output = run_build_cli("--golden", str(golden), "--context-only", str(tmp_path / "ctx"),
                                        cache=cache)
    assert code == BAD_INPUT, output
    # Refused when the golden is loaded (its environment is validated there), before anything runs.
    assert len(lines) == 1 and lines[0].startswith("envlock: error: ") and "environment" in lines[0], lines
    assert names in lines[0]
    assert not cache.exists() and not (tmp_path / "ctx").exists()  # refused before any download or write


# 2. File-system problems are one line, found before pip runs.

def test_context_only_pointing_at_a_file_is_one_line_before_any_pip_work(tmp_path: Path) -> None:
    golden = tmp_path / "golden.json"
    write_golden(golden)
    not_a_dir = tmp_path / "context.txt"
    not_a_dir.write_text("mine\n")
    cache = tmp_path / "cache"
    code, lines, output = run_build_cli("--golden", str(golden), "--context-only", str(not_a_dir), cache=cache)
    assert code == BAD_INPUT, output
    assert len(lines) == 1 and str(not_a_dir) in lines[0] and "must be a directory" in lines[0]
    assert not (cache / "locks").exists()
    assert not_a_dir.read_text() == "mine\n"


def test_wheelhouse_pointing_at_a_file_is_one_line(tmp_path: Path) -> None:
    golden = tmp_path / "golden.json"
    write_golden(golden)
    house = tmp_path / "wheels.tar"
    house.write_bytes(b"x")
    code, lines, output = run_build_cli("--golden", str(golden), "--wheelhouse", str(house), "--context-only",
                                        str(tmp_path / "ctx"), cache=tmp_path / "cache")
    assert code == BAD_INPUT, output
    assert len(lines) == 1 and "--wheelhouse must be a directory" in lines[0] and str(house) in lines[0]


def test_a_cache_dir_that_cannot_be_created_is_one_line(tmp_path: Path) -> None:
    golden = tmp_path / "golden.json"
    write_golden(golden)
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    code, lines, output = run_build_cli("--golden", str(golden), "--context-only", str(tmp_path / "ctx"),
                                        cache=blocker / "cache")
    assert code == BAD_INPUT, output
    assert len(lines) == 1 and str(blocker) in lines[0] and "Not a directory" in lines[0]


def test_file_errors_turn_os_errors_into_one_line_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(BadFileError, match="Not a directory") as caught, file_errors(tmp_path):
        (tmp_path / "f" / "sub").mkdir()
    assert caught.value.path == tmp_path / "f" / "sub"


class _FakeDockerApi(BaseHTTPRequestHandler):
    """Answers image lookups the way dockerd does (status + JSON message), over real loopback HTTP."""

    answers = {
        "UPPER:tag": (400, "no such image: UPPER:tag: invalid reference format: repository name must be lowercase"),
        "missing:1": (404, "No such image: missing:1"),
        "boom:1": (500, "layer store is broken"),
    }

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        ref = self.path.split("/images/", 1)[-1].rsplit("/json", 1)[0]
        status, message = self.answers.get(unquote(ref), (404, "page not found"))
        body = json.dumps({"message": message}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def docker_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeDockerApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"tcp://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_image_id_maps_docker_errors_to_envlock_errors(docker_api: str) -> None:
    client = docker.DockerClient(base_url=docker_api, version="1.41", timeout=5)
    with pytest.raises(BadInputError, match=r"^--base-image UPPER:tag: .*must be lowercase"):
        image_id(client, "UPPER:tag")
    assert image_id(client, "missing:1") is None
    with pytest.raises(DockerUnavailable, match="layer store is broken"):
        image_id(client, "boom:1")


def test_image_id_with_the_daemon_gone_is_docker_unavailable(tmp_path: Path) -> None:
    client = docker.DockerClient(base_url=f"unix://{tmp_path}/no-docker.sock", version="1.41", timeout=5)
    with pytest.raises(DockerUnavailable, match="start"):
        image_id(client, "envlock-base:bookworm")


class _FailingBuildApi:
    """What the SDK's low-level build streams back when a RUN step fails."""

    def build(self, **_kwargs: object) -> Iterator[dict[str, str]]:
        yield {"stream": "Step 1/2 : FROM envlock-base:bookworm\n"}
        yield {"stream": " ---> 0123456789ab\n"}
        yield {"stream": "Step 2/2 : RUN   pip install --no-index six\n"}
        yield {"stream": "ERROR: No matching distribution found for six\n"}
        yield {"error": "The command '/bin/sh -c pip install --no-index six' returned a non-zero code: 1"}


def test_a_failed_docker_build_is_image_build_failed_naming_the_step_exit_3(tmp_path: Path) -> None:
    client = SimpleNamespace(api=_FailingBuildApi())
    with pytest.raises(ImageBuildFailed) as caught:
        docker_engine.build(client, tmp_path, tag="envlock/t:1")
    assert caught.value.exit_code == ENVIRONMENT and isinstance(caught.value, EnvironmentProblem)
    message = str(caught.value)
    assert message.startswith("docker build failed at Step 2/2 : RUN pip install --no-index six: The command ")
    assert "No matching distribution found for six" in message and "\n" not in message  # one line


# 3. The golden in the context is exactly the golden that was checked.

def _context_inputs(tmp_path: Path) -> dict[str, object]:
    wheel = tmp_path / "numpy-2.4.6-cp311-none-any.whl"
    wheel.write_bytes(b"wheel")
    own = tmp_path / "envlock-0.1.0-py3-none-any.whl"
    own.write_bytes(b"own")
    return {"dockerfile": "FROM x\n", "lock_text": "numpy==2.4.6\n", "wheels": [wheel], "own_lock_text": "e\n",
            "own_wheel": own}


def test_write_context_refuses_a_golden_changed_after_it_was_loaded(tmp_path: Path) -> None:
    path = tmp_path / "golden.json"
    loaded = write_golden(path)
    write_golden(path, created_at="2026-02-02T00:00:00+00:00")  # another, valid golden replaces it mid-build
    with pytest.raises(IntegrityError, match="changed while envlock build was reading it"):
        write_context(tmp_path / "ctx", golden=path, golden_digest=loaded.digest, **_context_inputs(tmp_path))  # type: ignore[arg-type]


def test_write_context_replaces_files_rather_than_writing_through_links(tmp_path: Path) -> None:
    path = tmp_path / "golden.json"
    golden = write_golden(path)
    context = tmp_path / "ctx"
    (context / "envlock").mkdir(parents=True)
    victim = tmp_path / "victim.json"
    victim.write_text("someone else's file\n")
    os.link(victim, context / "envlock" / "golden.json")  # e.g. a context copied with cp -al
    write_context(context, golden=path, golden_digest=golden.digest, **_context_inputs(tmp_path))  # type: ignore[arg-type]
    assert victim.read_text() == "someone else's file\n"
    assert (context / "envlock" / "golden.json").read_bytes() == path.read_bytes()
    assert os.access(context / "envlock" / "entrypoint.sh", os.X_OK)
    assert (context / "envlock" / "entrypoint.sh").stat().st_mode & 0o777 == 0o755
    assert not [p for p in (context / "envlock").iterdir() if p.name.endswith(".tmp")]


# 4. Damaged or old caches are cache misses.

PACKAGES = wheelhouse.PackageSet(requirements=["six==1.17.0"], constraints=[])


def _lock_cache(cache: Path) -> Path:
    target = wheelhouse.pip_target_args("3.11", "x86_64", "2.36")
    path = wheelhouse.lock_cache_file(PACKAGES, target, cache)
    path.parent.mkdir(parents=True)
    return path


def _resolve(cache: Path) -> list[wheelhouse.LockedWheel]:
    # FakeRunner knows no commands: if resolve runs pip, pip "did not run" (EnvironmentProblem).
    return wheelhouse.resolve(PACKAGES, python_version="3.11", arch="x86_64", glibc="2.36", cache_dir=cache,
                              runner=FakeRunner())


@pytest.mark.parametrize("content", [
    "[{\"name\": \"six\", \"vers",  # cut short
    json.dumps([{"name": "six", "version": "1.17.0", "filename": "six.whl", "url": "u", "sha256": "a" * 64,
                 "requires_python": ">=3"}]),  # a row from another envlock version
    json.dumps([{"name": "six"}]),
    json.dumps({"six": "1.17.0"}),
])
def test_a_damaged_resolution_cache_is_a_miss_and_is_removed(tmp_path: Path, content: str) -> None:
    cache_file = _lock_cache(tmp_path)
    cache_file.write_text(content)
    with pytest.raises(EnvironmentProblem, match="pip did not run"):  # it went on to resolve again
        _resolve(tmp_path)
    assert not cache_file.exists()


def test_a_good_resolution_cache_is_used_and_its_key_has_a_format_version(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    cache_file = _lock_cache(tmp_path)
    row = {"name": "six", "version": "1.17.0", "filename": "six.whl", "url": "u", "sha256": "a" * 64}
    cache_file.write_text(json.dumps([row]))
    assert _resolve(tmp_path) == [wheelhouse.LockedWheel(**row)]
    target = wheelhouse.pip_target_args("3.11", "x86_64", "2.36")
    monkeypatch.setattr(wheelhouse, "LOCK_CACHE_FORMAT", wheelhouse.LOCK_CACHE_FORMAT + 1)
    assert wheelhouse.lock_cache_file(PACKAGES, target, tmp_path) != cache_file


@pytest.mark.parametrize("content", ["{\"six.whl\": [3, ", "[1, 2]", json.dumps({"six.whl": 5}),
                                     json.dumps({"six.whl": [3, 1, 2, 4]})])
def test_a_damaged_hash_cache_means_rehashing(tmp_path: Path, content: str) -> None:
    house = tmp_path / "wheelhouse"
    house.mkdir()
    wheel = house / "six.whl"
    wheel.write_bytes(b"six")
    (house / ".envlock-sha256.json").write_text(content)
    lock = [wheelhouse.LockedWheel("six", "1.17.0", "six.whl", "u", wheelhouse.file_sha256(wheel))]
    wheelhouse.download(lock, house, python_version="3.11", arch="x86_64", glibc="2.36")  # nothing to download
    entries = json.loads((house / ".envlock-sha256.json").read_text())
    assert entries["six.whl"][2] == lock[0].sha256


@contextlib.contextmanager
def _no_hang(seconds: float = 10.0) -> Iterator[None]:
    """Fail, instead of hanging the run, when the block blocks (e.g. opening a FIFO nobody writes)."""
    def _alarm(_signum: int, _frame: object) -> None:
        raise AssertionError(f"blocked for {seconds} s")

    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _make_entry(path: Path, kind: str) -> None:
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        (path / "inside").mkdir(parents=True)
    elif kind == "huge":  # sparse: 4 GiB on paper, nothing on disk; only a bounded read stays quick
        with path.open("wb") as handle:
            handle.truncate(4 << 30)
    elif kind == "device link":
        path.symlink_to("/dev/zero")


@pytest.mark.parametrize("kind", ["fifo", "directory", "huge", "device link"])
def test_a_resolution_cache_entry_that_is_no_file_is_a_miss_and_is_removed(tmp_path: Path, kind: str) -> None:
    cache_file = _lock_cache(tmp_path)
    _make_entry(cache_file, kind)
    with _no_hang(), pytest.raises(EnvironmentProblem, match="pip did not run"):  # it went on to resolve again
        _resolve(tmp_path)
    assert not os.path.lexists(cache_file)


@pytest.mark.parametrize("kind", ["fifo", "directory", "huge", "device link"])
def test_a_hash_cache_that_is_no_file_means_rehashing_and_is_replaced(tmp_path: Path, kind: str) -> None:
    house = tmp_path / "wheelhouse"
    house.mkdir()
    wheel = house / "six.whl"
    wheel.write_bytes(b"six")
    _make_entry(house / ".envlock-sha256.json", kind)
    lock = [wheelhouse.LockedWheel("six", "1.17.0", "six.whl", "u", wheelhouse.file_sha256(wheel))]
    with _no_hang():
        wheelhouse.download(lock, house, python_version="3.11", arch="x86_64", glibc="2.36")  # nothing to download
    entries = json.loads((house / ".envlock-sha256.json").read_text())
    assert entries["six.whl"][2] == lock[0].sha256


@pytest.mark.parametrize("kind", ["fifo", "directory", "device link"])
def test_a_wheel_that_is_no_regular_file_is_one_line_not_a_hang(tmp_path: Path, kind: str) -> None:
    house = tmp_path / "wheelhouse"
    house.mkdir()
    _make_entry(house / "six.whl", kind)
    lock = [wheelhouse.LockedWheel("six", "1.17.0", "six.whl", "u", "0" * 64)]
    with _no_hang(), pytest.raises(BadFileError, match="not a regular file"):
        wheelhouse.file_sha256(house / "six.whl")
    with _no_hang(), pytest.raises(BadFileError, match="six.whl: is .*, not a regular file"):
        wheelhouse.download(lock, house, python_version="3.11", arch="x86_64", glibc="2.36")


# 5. The glibc wheels are chosen for comes from the base, not a constant.

CFG = ("[old]\ntag = base:old\nimage = sha256:1\npython = 3.10\nglibc = 2.31\n"
       "[new]\ntag = base:new\nimage = sha256:2\npython = 3.11\nglibc = 2.36\n")


def test_base_images_carry_their_glibc() -> None:
    bases = parse_base_images(CFG)
    assert [(b.tag, b.glibc) for b in bases] == [("base:old", "2.31"), ("base:new", "2.36")]
    assert all(b.glibc for b in parse_base_images((REPO_ROOT / "images" / "base-images.cfg").read_text()))
    with pytest.raises(BadInputError, match="glibc must look like"):
        parse_base_images("[x]\ntag = t\nimage = sha256:1\nglibc = bookworm\n")


def test_glibc_for_a_command_line_base_uses_what_is_known() -> None:
    bases = parse_base_images(CFG)
    assert glibc_for(bases[0], "3.11.7", bases) == "2.31"  # a pinned base: its own
    unknown = BaseImage(name="command-line", image="sha256:9", tag="mine:1")
    assert glibc_for(unknown, "3.10.2", bases) == "2.31"  # the pin for the golden's Python
    assert glibc_for(unknown.model_copy(update={"tag": "base:new"}), "3.10.2", bases) == "2.36"  # a pinned tag
    assert glibc_for(unknown, "3.13.0", bases) == "2.31"  # no match: the oldest, whose wheels run anywhere
    with pytest.raises(BadInputError, match="glibc"):
        glibc_for(unknown, "3.11.1", [BaseImage(name="x", image="sha256:1", tag="x:1", python="3.11")])
