"""The one seam for side effects on the outside world: subprocesses and reading system files.

Collectors take a ``Runner``; unit tests pass a ``FakeRunner`` fed with real captured outputs
from ``tests/data`` so parsing is tested on what real machines print.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str


class Runner:
    """Real side effects. Every method returns ``None`` on failure instead of raising."""

    def run(self, argv: list[str], *, timeout: float = 10.0, env: dict[str, str] | None = None) -> CommandResult | None:
        try:
            proc = subprocess.run(  # noqa: S603 - argv lists only, never a shell
                argv, capture_output=True, text=True, timeout=timeout, env=env, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return CommandResult(proc.returncode, proc.stdout, proc.stderr)

    def run_watched(self, argv: list[str], *, timeout: float, env: dict[str, str] | None = None,
                    watch: Callable[[], str | None], interval: float = 0.25) -> CommandResult | None:
        """Like ``run``, but calls ``watch()`` every ``interval`` s while the process runs and kills it
        when ``watch`` returns a reason (the caller keeps the reason). None: past ``timeout`` or not started.

        Output goes to temporary files, not pipes: a chatty child (TF logs) can never block on a full pipe.
        """
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            try:
                proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env)  # noqa: S603 - argv list, no shell
            except OSError:
                return None
            deadline = time.monotonic() + timeout
            try:
                while True:
                    try:
                        proc.wait(timeout=interval)
                        break
                    except subprocess.TimeoutExpired:
                        pass
                    if time.monotonic() > deadline:
                        return None
                    if watch() is not None:
                        proc.kill()
                        proc.wait()
                        break
            finally:
                if proc.poll() is None:  # past the deadline, or interrupted: never leave it running
                    proc.kill()
                    proc.wait()
            out.seek(0)
            err.seek(0)
            return CommandResult(proc.returncode, out.read().decode("utf-8", "replace"),
                                 err.read().decode("utf-8", "replace"))

    def read_text(self, path: str | Path) -> str | None:
        try:
            return Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None

    def exists(self, path: str | Path) -> bool:
        return Path(path).exists()

    def listdir(self, path: str | Path) -> list[str] | None:
        try:
            return sorted(p.name for p in Path(path).iterdir())
        except OSError:
            return None


@dataclass
class FakeRunner(Runner):
    """Replays recorded outputs: ``files`` maps path -> content, ``commands`` maps argv tuple -> result."""

    files: dict[str, str] = field(default_factory=dict)
    commands: dict[tuple[str, ...], CommandResult] = field(default_factory=dict)

    def run(self, argv: list[str], *, timeout: float = 10.0, env: dict[str, str] | None = None) -> CommandResult | None:
        return self.commands.get(tuple(argv))

    def run_watched(self, argv: list[str], *, timeout: float, env: dict[str, str] | None = None,
                    watch: Callable[[], str | None], interval: float = 0.25) -> CommandResult | None:
        return self.run(argv, timeout=timeout, env=env)

    def read_text(self, path: str | Path) -> str | None:
        return self.files.get(str(path))

    def exists(self, path: str | Path) -> bool:
        p = str(path)
        return p in self.files or any(k.startswith(p.rstrip("/") + "/") for k in self.files)

    def listdir(self, path: str | Path) -> list[str] | None:
        prefix = str(path).rstrip("/") + "/"
        names = {k[len(prefix):].split("/")[0] for k in self.files if k.startswith(prefix)}
        return sorted(names) if names else None
