"""Redaction of secrets inside values that leave the process (files, reports, logs, HTTP).

Standard library only, pure, and linear in the length of the value: every pattern is anchored
by a literal or a look-behind that fixes where a match can start, and paths are split into
segments once, so no input backtracks quadratically (values are also bounded, see
``envlock.environ``).

What is redacted (README "Nothing secret"):

* a URL's user information: ``scheme://user:pass@host`` -> ``scheme://REDACTED@host``, also a
  URL nested inside another one's path or query;
* every query and fragment value of a URL: ``?token=abc&x=1`` -> ``?token=REDACTED&x=REDACTED``;
* ``NAME=value`` / ``--name=value`` outside URLs when NAME looks like a credential
  (token, secret, password, passwd, pwd, credential, apikey/api_key, access_key, auth*,
  signature, session, cookie, private_key, or a ``key``/``pass``/``sig``/``pw`` word), wherever
  the pair starts: also nested in another pair's value (``--flag=token=S``,
  ``--xla_dump_to=/d?token=S``);
* ``Bearer xyz`` / ``Basic xyz`` -> ``Bearer REDACTED``;
* home directories: ``/home/NAME``, ``/Users/NAME``, ``/root``, a Windows profile seen from
  WSL, Cygwin or MSYS (``/mnt/c/Users/NAME``, ``/cygdrive/c/Users/NAME``, ``/c/Users/NAME``,
  ``C:\\Users\\NAME``) and ``$HOME`` -> ``~``. A path is matched as the kernel would resolve it,
  lexically: ``//home/NAME``, ``/./home/NAME``, ``/home//NAME`` and ``/srv/../home/NAME`` are
  all ``/home/NAME``; a path whose home was redacted is written back normalised (``~/x``).

A value without any of these is returned unchanged, so redaction never moves a digest or a
comparison of ordinary values.
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "REDACTED"

# Where a URL token ends inside a value such as XLA_FLAGS="--a=gs://b/x?k=v --c".
_URL_END = re.compile(r"[\s\"'<>]")
# A URL's user information: everything from "://" to the authority's last "@" (greedy within the
# authority, which ends at the first "/", "?", "#" or URL end). The look-behind fixes the start.
_USERINFO = re.compile(r"(?<=://)[^/?#\s\"'<>]*@")
# Credential-looking words inside a key (compared in lower case, as substrings) ...
_KEY_MARKERS = ("token", "secret", "password", "passwd", "pwd", "credential", "apikey", "api_key", "api-key",
                "accesskey", "access_key", "access-key", "auth", "signature", "session", "cookie", "private_key",
                "privatekey", "passphrase")
# ... and whole words only (``--xla_disable_hlo_passes`` is not a password).
_KEY_WORDS = frozenset({"key", "pass", "sig", "pw", "jwt", "sas"})
_WORD_SPLIT = re.compile(r"[_.\-]+")
# The key of a key=value pair: the look-behind pins its start, so each key is scanned once. Only
# the key is matched: the scan goes on right after "=", so a pair nested in an ordinary pair's
# value (``--flag=token=S``) is found too; a credential's value runs to ``_VALUE_END``.
_KEY = re.compile(r"(?<![\w.\-])([\w.\-]+)=")
_VALUE_END = re.compile(r"[\s&;,\"'#]")
_SCHEME_AUTH = re.compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=\-]{8,}")

# A path: a run of characters that are not separators, starting with "/" where a path can start
# (not inside a word or another path: "/srv/home/alice" is not a home), and not the "//" of a URL
# ("https://home/x" names a host); a file URL's path starts at its third slash.
_PATH = re.compile(r"(?:(?<=[Ff][Ii][Ll][Ee]://)|(?<![\w.~/\-])(?!(?<=\w:)//))/[^\s:;,=\"'<>|]*")
# A Windows profile directory written with a drive letter, either slash.
_WINDOWS_HOME = re.compile(r"(?i)(?<![\w.~/\-])[a-z]:[\\/]+users[\\/]+[^\\/\s:;,=\"'<>|]+")


def _credential_key(key: str) -> bool:
    lowered = key.lower().lstrip("-")
    if any(marker in lowered for marker in _KEY_MARKERS):
        return True
    return any(word in _KEY_WORDS for word in _WORD_SPLIT.split(lowered))


def _redact_query(query: str) -> str:
    parts = []
    for part in re.split(r"([&;])", query):
        if part in ("&", ";") or not part:
            parts.append(part)
        elif "=" in part:
            parts.append(part.split("=", 1)[0] + "=" + REDACTED)
        else:
            parts.append(REDACTED)
    return "".join(parts)


def _redact_url_query(url: str) -> str:
    """``url`` starts right after ``://``: redact its query and fragment values (whichever comes first:
    a "?" inside a fragment is part of the fragment)."""
    query, fragment = url.find("?"), url.find("#")
    if fragment != -1 and (query == -1 or fragment < query):
        return url[:fragment + 1] + _redact_query(url[fragment + 1:])
    if query == -1:
        return url
    tail, hashed, after = url[query + 1:].partition("#")
    return url[:query + 1] + _redact_query(tail) + hashed + (_redact_query(after) if hashed else "")


def _redact_urls(value: str) -> str:
    value = _USERINFO.sub(REDACTED + "@", value)  # every "://", nested ones too
    out: list[str] = []
    position = 0
    while True:
        found = value.find("://", position)
        if found == -1:
            out.append(value[position:])
            return "".join(out)
        start = found + 3
        end_match = _URL_END.search(value, start)
        end = end_match.start() if end_match else len(value)
        out.append(value[position:start])
        out.append(_redact_url_query(value[start:end]))
        position = end


def _redact_pairs(value: str) -> str:
    out: list[str] = []
    position = 0  # everything before it is in ``out``
    scan = 0
    while True:
        match = _KEY.search(value, scan)
        if match is None:
            break
        start = match.end()
        if not _credential_key(match.group(1)):
            scan = start  # the value may hold a pair of its own
            continue
        end_match = _VALUE_END.search(value, start)
        end = end_match.start() if end_match else len(value)
        if value[start:end] not in ("", REDACTED):
            out.append(value[position:start])
            out.append(REDACTED)
            position = end
        scan = end
    out.append(value[position:])
    return "".join(out)


# Home directories as path segments: (segment patterns, in order). A pattern is a literal
# (compared exactly, or in lower case when it starts with "i:"), "NAME" (any user name) or
# "DRIVE" (one letter). Checked at every segment where the path so far resolves to "/".
_HOME_SHAPES: tuple[tuple[str, ...], ...] = (
    ("home", "NAME"),
    ("Users", "NAME"),
    ("root",),
    ("mnt", "DRIVE", "i:users", "NAME"),  # WSL
    ("cygdrive", "DRIVE", "i:users", "NAME"),  # Cygwin
    ("DRIVE", "i:users", "NAME"),  # MSYS / Git Bash
)


def _segment_fits(segment: str, pattern: str) -> bool:
    if pattern == "NAME":
        return segment not in ("", ".", "..")
    if pattern == "DRIVE":
        return len(segment) == 1 and segment.isalpha() and segment.isascii()
    if pattern.startswith("i:"):
        return segment.lower() == pattern[2:]
    return segment == pattern


def _home_length(segments: list[str], index: int, home: tuple[str, ...]) -> int:
    """How many segments from ``index`` on name a home directory (0: none)."""
    if home and segments[index] == home[0] and tuple(segments[index:index + len(home)]) == home:
        return len(home)
    for shape in _HOME_SHAPES:
        if len(segments) - index >= len(shape) and all(
                _segment_fits(segments[index + offset], pattern) for offset, pattern in enumerate(shape)):
            return len(shape)
    return 0


def _path_segments(path: str) -> list[str]:
    """The segments of an absolute path, empty ones ("//") and "." dropped; ".." kept."""
    return [segment for segment in path.split("/") if segment not in ("", ".")]


def _redact_path(path: str, home: tuple[str, ...]) -> str:
    """``path`` (absolute) with every home directory in it as ``~``, or ``path`` itself if none."""
    segments = _path_segments(path)
    out: list[str] = []
    depth = 0  # how deep the path so far resolves, lexically ("/a/.." is 0: the root)
    found = False
    index = 0
    while index < len(segments):
        length = _home_length(segments, index, home) if depth == 0 else 0
        if length:
            out.append("~")
            found = True
            depth += length
            index += length
            continue
        segment = segments[index]
        depth = max(depth - 1, 0) if segment == ".." else depth + 1
        out.append(segment)
        index += 1
    if not found:
        return path
    text = "/".join(out)
    if not text.startswith("~"):
        text = "/" + text
    return text + "/" if path.endswith("/") and not text.endswith("/") else text


def _home_segments(home: str | None) -> tuple[str, ...]:
    # "/" or a relative HOME would turn every path into "~": only a real directory counts.
    if not home or not home.startswith("/"):
        return ()
    return tuple(_path_segments(home))


def _redact_home(value: str, home: str | None) -> str:
    if ":" in value:  # first: "C:/Users/NAME" would otherwise end as "C:~"
        value = _WINDOWS_HOME.sub("~", value)
    if "/" in value:
        home_segments = _home_segments(home)
        value = _PATH.sub(lambda m: _redact_path(m.group(0), home_segments), value)
    return value


def redact_value(value: str, home: str | None = None) -> str:
    """``value`` with credentials and home directories replaced (see the module docstring)."""
    if not isinstance(value, str) or not value:
        return value
    redacted = _redact_urls(value) if "://" in value else value
    if "=" in redacted:
        redacted = _redact_pairs(redacted)
    redacted = _SCHEME_AUTH.sub(lambda m: f"{m.group(1)} {REDACTED}", redacted)
    return _redact_home(redacted, home)


def needs_redaction(value: str, home: str | None = None) -> bool:
    return redact_value(value, home) != value


def redact_data(data: Any, home: str | None = None) -> Any:
    """Every string inside ``data`` (str, list, tuple, dict values) passed through ``redact_value``."""
    if isinstance(data, str):
        return redact_value(data, home)
    if isinstance(data, list | tuple):
        return type(data)(redact_data(item, home) for item in data)
    if isinstance(data, dict):
        return {key: redact_data(item, home) for key, item in data.items()}
    return data
