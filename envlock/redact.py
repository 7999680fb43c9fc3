"""Redaction of secrets inside values that leave the process (files, reports, logs, HTTP).

Standard library only, pure, and linear in the length of the value: every pattern is anchored
by a literal or a look-behind that fixes where a match can start, so no input backtracks
quadratically (values are also bounded, see ``envlock.environ``).

What is redacted (README "Nothing secret"):

* a URL's user information: ``scheme://user:pass@host`` -> ``scheme://REDACTED@host``;
* every query and fragment value of a URL: ``?token=abc&x=1`` -> ``?token=REDACTED&x=REDACTED``;
* ``NAME=value`` / ``--name=value`` outside URLs when NAME looks like a credential
  (token, secret, password, passwd, pwd, credential, apikey/api_key, access_key, auth*,
  signature, session, cookie, private_key, or a ``key``/``pass``/``sig``/``pw`` word);
* ``Bearer xyz`` / ``Basic xyz`` -> ``Bearer REDACTED``;
* home directories: ``/home/NAME``, ``/Users/NAME``, ``/root`` and ``$HOME`` -> ``~``.

A value without any of these is returned unchanged, so redaction never moves a digest or a
comparison of ordinary values.
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "REDACTED"

# Where a URL token ends inside a value such as XLA_FLAGS="--a=gs://b/x?k=v --c".
_URL_END = re.compile(r"[\s\"'<>]")
# Credential-looking words inside a key (compared in lower case, as substrings) ...
_KEY_MARKERS = ("token", "secret", "password", "passwd", "pwd", "credential", "apikey", "api_key", "api-key",
                "accesskey", "access_key", "access-key", "auth", "signature", "session", "cookie", "private_key",
                "privatekey", "passphrase")
# ... and whole words only (``--xla_disable_hlo_passes`` is not a password).
_KEY_WORDS = frozenset({"key", "pass", "sig", "pw", "jwt", "sas"})
_WORD_SPLIT = re.compile(r"[_.\-]+")
# A key=value pair: the look-behind pins the start of the key, so each key is scanned once.
_PAIR = re.compile(r"(?<![\w.\-])(-{0,2}[A-Za-z_][\w.\-]*)=([^\s&;,\"'#]*)")
_SCHEME_AUTH = re.compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=\-]{8,}")
_HOME = re.compile(r"(?:(?<=file://)|(?<![\w.~/\-]))(?:/home/[^/\s:;,=\"']+|/Users/[^/\s:;,=\"']+|/root)(?=[/\s:;,=\"']|$)")


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


def _redact_url(url: str) -> str:
    """``url`` starts right after ``://``: strip user information, redact query and fragment values."""
    cut = len(url)
    for delimiter in "/?#":
        found = url.find(delimiter)
        if found != -1:
            cut = min(cut, found)
    authority, rest = url[:cut], url[cut:]
    if "@" in authority:
        authority = REDACTED + authority[authority.rfind("@"):]
    for mark in "?#":
        found = rest.find(mark)
        if found != -1:
            tail = rest[found + 1:]
            fragment = ""
            if mark == "?" and "#" in tail:
                tail, fragment = tail.split("#", 1)
                fragment = "#" + _redact_query(fragment)
            rest = rest[:found + 1] + _redact_query(tail) + fragment
            break
    return authority + rest


def _redact_urls(value: str) -> str:
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
        out.append(_redact_url(value[start:end]))
        position = end


def _redact_pairs(value: str) -> str:
    def replace(match: re.Match[str]) -> str:
        key, secret = match.group(1), match.group(2)
        if secret and secret != REDACTED and _credential_key(key):
            return f"{key}={REDACTED}"
        return match.group(0)

    return _PAIR.sub(replace, value)


def _redact_home(value: str, home: str | None) -> str:
    if home:
        home = home.rstrip("/")
        # "/" or a relative HOME would turn every path into "~": only a real directory counts.
        if home.startswith("/"):
            value = re.sub(r"(?<![\w.~/\-])" + re.escape(home) + r"(?=[/\s:;,=\"']|$)", "~", value)
    return _HOME.sub("~", value)


def redact_value(value: str, home: str | None = None) -> str:
    """``value`` with credentials and home directories replaced (see the module docstring)."""
    if not isinstance(value, str) or not value:
        return value
    redacted = _redact_urls(value) if "://" in value else value
    if "=" in redacted:
        redacted = _redact_pairs(redacted)
    if " " in redacted:
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
