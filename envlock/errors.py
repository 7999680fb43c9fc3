"""Typed errors. Each carries the exit code the CLI turns it into; only ``cli.main`` exits.

Exit codes are part of envlock's interface (README, ``--help``):

* 0 ``OK``           -- success; the machine matches / reproduces.
* 1 ``DRIFT``        -- a difference, drift or nondeterminism was found.
* 2 ``BAD_INPUT``    -- bad usage or a bad input file (missing, malformed, wrong schema, tampered).
* 3 ``ENVIRONMENT``  -- this machine cannot do it (TensorFlow or Docker missing, daemon down, ...).
"""

from __future__ import annotations

from pathlib import Path

OK = 0
DRIFT = 1
BAD_INPUT = 2
ENVIRONMENT = 3

EXIT_CODES_HELP = (
    "Exit codes: 0 ok; 1 difference, drift or nondeterminism found; "
    "2 bad usage or bad input file; 3 environment problem (e.g. TensorFlow or Docker missing)."
)


_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(char: str) -> str:
    code = ord(char)
    if char in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[char]
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 in a file name (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def one_line(text: str) -> str:
    """``text`` with every control, format, separator or unpaired-surrogate character escaped:
    a path or value holding a newline (or a bidi override, or invalid UTF-8) stays one line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


class EnvlockError(Exception):
    """Base class: a one-line, user-facing message and an exit code."""

    exit_code: int = 1

    def __init__(self, message: str) -> None:
        message = one_line(message)  # wherever it is shown (CLI, daemon log, /status), one line
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class BadInputError(EnvlockError):
    """Bad usage or a bad argument value."""

    exit_code = BAD_INPUT


class BadFileError(BadInputError):
    """An input file that cannot be used: names the file and the problem."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)
        self.problem = problem


class IntegrityError(BadFileError):
    """A file whose integrity digest does not match its content (tampered or corrupted)."""


class SignatureError(BadFileError):
    """A golden whose signature is missing, by an untrusted key, or does not verify (exit 2)."""


class EnvironmentProblem(EnvlockError):
    """This machine cannot do what was asked (a component is missing or unreachable)."""

    exit_code = ENVIRONMENT


class TensorflowMissing(EnvironmentProblem):
    def __init__(self, detail: str = "") -> None:
        msg = "TensorFlow is not importable in this Python; install it (e.g. pip install 'envlock[tf]')"
        super().__init__(f"{msg}: {detail}" if detail else msg)


class DockerUnavailable(EnvironmentProblem):
    pass


class ImageBuildFailed(EnvironmentProblem):
    """The Docker build failed; the message names the step and carries its last log lines."""


class DriftFound(EnvlockError):
    """Raised where a caller wants drift as an error (e.g. ``lockdown(strict=True)``)."""

    exit_code = DRIFT


class ProbeModuleError(Exception):
    """A probe module could not be imported (bad input: the message names the module).

    Raised in the probe child, which reports it to the parent as a result: a plain ``Exception``,
    not an ``EnvlockError``, so it never carries an exit code of its own."""
