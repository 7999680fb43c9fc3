"""``envlock fleet --prometheus URL``: the fleet's numeric classes from the Prometheus that already
scrapes the daemons, with no collector of envlock's own (issue 20, item 2). ``machine_rows`` gives
them to ``envlock.fleet.picture.analyse`` like the rows of files (``envlock.fleet.render`` escapes them).

Two instant queries of Prometheus's HTTP API (``GET /api/v1/query``): ``envlock_numeric_class``,
the info series every ``envlock watch`` exports from its last conclusive verify (one per node), and
``envlock_golden_info`` (the golden each node checks against, and the nodes that have no class yet).
Each scrape target (job, instance) is a node.

Prometheus is an outside server: its answer is bounded (bytes, JSON shape, series, time) and checked
once here; every label that reaches a terminal is escaped by fleet's renderer. A URL that is not one is
bad input (exit 2), and so is an answer that is not Prometheus's API; a Prometheus that cannot be
reached, or answers with a server error, is an environment problem (exit 3).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from envlock.errors import BadInputError, EnvironmentProblem
from envlock.fleet.rows import MachineRow
from envlock.numeric import DEFAULT_PROFILE, is_numeric_class
from envlock.store import json_shape_problem

CLASS_QUERY = "envlock_numeric_class"
GOLDEN_QUERY = "envlock_golden_info"
TIMEOUT_S = 10.0  # for the whole answer of one query, not per read
MAX_ANSWER_BYTES = 64 * 1024 * 1024  # ~300,000 series of these two metrics
MAX_SERIES = 200_000  # per query; a fleet of envlock nodes has one class series each
_CHUNK = 64 * 1024
_PROFILE_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


@dataclass(frozen=True)
class Node:
    """One scrape target: Prometheus's ``job`` and ``instance`` labels, and the ``node`` label where
    the scrape config adds one (Kubernetes: relabel ``__meta_kubernetes_pod_node_name`` to ``node``,
    as deploy/README.md shows; a pod's address says little to a person)."""

    job: str
    instance: str
    node: str | None = None

    @property
    def name(self) -> str:
        return f"{self.node} ({self.instance})" if self.node else self.instance


def _node(labels: dict[str, str]) -> Node:
    return Node(labels.get("job", ""), labels.get("instance", ""), labels.get("node") or None)


@dataclass(frozen=True)
class ClassRow:
    """One node's numeric class as Prometheus has it now."""

    node: Node
    numeric_class: str
    profile: str
    golden_digest: str | None  # from envlock_golden_info of the same node (None: not scraped)


@dataclass(frozen=True)
class PrometheusFleet:
    url: str  # the Prometheus given (escaped when rendered)
    rows: tuple[ClassRow, ...]
    without_class: tuple[Node, ...]  # nodes that export envlock_golden_info but no class yet
    left_out: int  # class series whose labels are not a class and a profile (not an envlock daemon's)

    def classes(self) -> dict[str, dict[str, list[ClassRow]]]:
        """profile -> class -> its nodes, largest class first (ties by class)."""
        by_profile: dict[str, dict[str, list[ClassRow]]] = {}
        for row in self.rows:
            by_profile.setdefault(row.profile, {}).setdefault(row.numeric_class, []).append(row)
        return {profile: dict(sorted(classes.items(), key=lambda kv: (-len(kv[1]), kv[0])))
                for profile, classes in sorted(by_profile.items())}


# ---- the edge: the URL and what Prometheus answered (pure) ------------------------------------


def api_url(base: str, query: str) -> str:
    """``base``'s instant-query URL for ``query``. ``base`` is Prometheus's root, with an optional
    path prefix (``http://host:9090``, ``https://host/prometheus/``)."""
    try:
        parts = urllib.parse.urlsplit(base)
        port = parts.port  # raises ValueError on a port that is not one
    except ValueError as exc:
        raise BadInputError(f"--prometheus {base}: not a URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadInputError(f"--prometheus {base}: not an http:// or https:// URL of a Prometheus server")
    if parts.query or parts.fragment:
        raise BadInputError(f"--prometheus {base}: give Prometheus's base URL, without a query or fragment")
    del port
    path = parts.path.rstrip("/") + "/api/v1/query"
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, urllib.parse.urlencode({"query": query}), ""))


def _not_prometheus(base: str, why: str) -> BadInputError:
    return BadInputError(f"--prometheus {base}: the answer is not Prometheus's HTTP API ({why})")


def parse_vector(raw: bytes, *, base: str) -> list[tuple[dict[str, str], str]]:
    """An instant query's answer as (labels, value) pairs; anything else is one line naming ``base``."""
    problem = json_shape_problem(raw, max_containers=4 * MAX_SERIES + 16)
    if problem is not None:
        raise _not_prometheus(base, problem.split(":")[0])
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise _not_prometheus(base, f"not JSON: {type(exc).__name__}") from None
    if not isinstance(data, dict) or data.get("status") not in ("success", "error"):
        raise _not_prometheus(base, "no status")
    if data["status"] == "error":
        raise EnvironmentProblem(f"Prometheus at {base} answered an error: "
                                 f"{data.get('errorType')}: {str(data.get('error'))[:300]}")
    body = data.get("data")
    if not isinstance(body, dict) or body.get("resultType") != "vector" or not isinstance(body.get("result"), list):
        raise _not_prometheus(base, "no vector result")
    if len(body["result"]) > MAX_SERIES:
        raise EnvironmentProblem(f"Prometheus at {base} answered {len(body['result'])} series, more than "
                                 f"{MAX_SERIES}")
    out = []
    for item in body["result"]:
        metric = item.get("metric") if isinstance(item, dict) else None
        value = item.get("value") if isinstance(item, dict) else None
        if (not isinstance(metric, dict) or not all(isinstance(v, str) for v in metric.values())
                or not isinstance(value, list) or len(value) != 2 or not isinstance(value[1], str)):
            raise _not_prometheus(base, "a result that is not a sample")
        out.append(({str(k): v for k, v in metric.items()}, value[1]))
    return out


def _is_profile(text: str) -> bool:
    return 0 < len(text) <= 63 and set(text) <= _PROFILE_OK and text[0].isalnum() and text[-1].isalnum()


def build_fleet(base: str, classes: list[tuple[dict[str, str], str]],
                goldens: list[tuple[dict[str, str], str]]) -> PrometheusFleet:
    """The typed picture from the two answers (pure)."""
    golden_of: dict[Node, str | None] = {}
    for labels, _ in goldens:
        golden_of[_node(labels)] = labels.get("digest") or None
    rows: list[ClassRow] = []
    left_out = 0
    for labels, value in classes:
        numeric_class, profile = labels.get("class", ""), labels.get("profile", "")
        if value != "1" or not is_numeric_class(numeric_class) or not _is_profile(profile):
            left_out += 1
            continue
        node = _node(labels)
        rows.append(ClassRow(node, numeric_class, profile, golden_of.get(node)))
    rows.sort(key=lambda r: (r.profile, r.numeric_class, r.node.job, r.node.instance))
    with_class = {row.node for row in rows}
    without = tuple(sorted((n for n in golden_of if n not in with_class), key=lambda n: (n.job, n.instance)))
    return PrometheusFleet(url=base, rows=tuple(rows), without_class=without, left_out=left_out)


# ---- the side effect: two HTTP GETs ---------------------------------------------------------------

class _HttpRedirectsOnly(urllib.request.HTTPRedirectHandler):
    """Follow a redirect (a Prometheus behind a proxy) only to http(s), never ftp:// as urllib would."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
        if urllib.parse.urlsplit(newurl).scheme not in ("http", "https"):
            raise urllib.error.HTTPError(newurl, code, f"redirect to a URL that is not http(s): {newurl}", headers,
                                         fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_open = urllib.request.build_opener(_HttpRedirectsOnly).open


def fetch(url: str, *, base: str, timeout_s: float = TIMEOUT_S, max_bytes: int = MAX_ANSWER_BYTES) -> bytes:
    """The body of ``url``: at most ``max_bytes``, all of it within ``timeout_s`` (a server that
    trickles bytes is cut off at the first read past the deadline, each read waiting at most
    ``timeout_s``: never more than twice ``timeout_s`` in all)."""
    deadline = time.monotonic() + timeout_s
    request = urllib.request.Request(  # noqa: S310 - api_url allows http(s) only, and so do redirects
        url, headers={"Accept": "application/json", "User-Agent": "envlock-fleet"})
    try:
        with _open(request, timeout=timeout_s) as response:
            chunks: list[bytes] = []
            size = 0
            while True:
                if time.monotonic() > deadline:
                    raise EnvironmentProblem(f"Prometheus at {base} did not answer within {timeout_s:g} s")
                chunk = response.read1(_CHUNK)  # what one recv brings: read() would wait for 64 KiB
                if not chunk:
                    return b"".join(chunks)
                size += len(chunk)
                if size > max_bytes:
                    raise _not_prometheus(base, f"larger than {max_bytes // (1024 * 1024)} MiB")
                chunks.append(chunk)
    except urllib.error.HTTPError as exc:
        detail = _error_detail(exc)
        if exc.code >= 500 or exc.code in (400, 422):  # Prometheus's own errors (a bad or failed query)
            raise EnvironmentProblem(f"Prometheus at {base} answered HTTP {exc.code}{detail}") from None
        raise _not_prometheus(base, f"HTTP {exc.code}{detail}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason.strerror if isinstance(exc.reason, OSError) and exc.reason.strerror else exc.reason
        raise EnvironmentProblem(f"cannot reach Prometheus at {base}: {reason}") from None
    except TimeoutError:
        raise EnvironmentProblem(f"Prometheus at {base} did not answer within {timeout_s:g} s") from None
    except (OSError, ValueError) as exc:  # a connection reset mid-answer, a malformed status line, ...
        raise EnvironmentProblem(f"cannot read Prometheus at {base}: {type(exc).__name__}: {exc}") from None


def _error_detail(exc: urllib.error.HTTPError) -> str:
    """Prometheus's ``error`` field of an error answer, when it has one (else nothing)."""
    try:
        data = json.loads(exc.read(64 * 1024))
        return f": {str(data['error'])[:300]}" if isinstance(data, dict) and "error" in data else ""
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def read_prometheus(base: str, *, timeout_s: float = TIMEOUT_S, max_bytes: int = MAX_ANSWER_BYTES) -> PrometheusFleet:
    """The fleet's classes now, from the Prometheus at ``base``."""
    urls = [api_url(base, CLASS_QUERY), api_url(base, GOLDEN_QUERY)]
    classes, goldens = (parse_vector(fetch(url, base=base, timeout_s=timeout_s, max_bytes=max_bytes),
                                     base=base) for url in urls)
    return build_fleet(base, classes, goldens)


# ---- as envlock fleet's rows (pure) --------------------------------------------------------------


def machine_rows(fleet: PrometheusFleet) -> list[MachineRow]:
    """``envlock fleet``'s rows (kind ``prometheus``), one per node: the class and profile, the node
    as the hostname, no probe cells; a node with no class yet is a row without one. The series carry
    no manifest digest and no envlock version (not known), nor the golden's class."""
    def row(node: Node, numeric_class: str | None, profile: str) -> MachineRow:
        return MachineRow(source=f"{fleet.url} {node.job}/{node.instance}", kind="prometheus",
                          hostname=node.node or node.instance, manifest_digest=None, envlock_version=None,
                          profile=profile, numeric_class=numeric_class)
    return ([row(r.node, r.numeric_class, r.profile) for r in fleet.rows]
            + [row(node, None, DEFAULT_PROFILE) for node in fleet.without_class])
