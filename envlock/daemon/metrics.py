"""Prometheus metrics, pulled from the daemon's state when scraped.

``DaemonCollector`` is a prometheus_client custom collector: ``collect()`` reads the current
``DaemonState`` and yields its series; nothing is pushed into gauges when a check ends. It is
registered in a registry of the daemon's own (never the global default one), so tests and
embedders get exactly envlock's series and nothing registered elsewhere leaks in.

The check series change a few times a minute but may be scraped many times a second (several
Prometheus servers, dashboards, a load balancer's probe): ``Metrics.render`` caches their text
until the state they are made from changes; only health (time alone can make a check overdue) and the process series
(RSS, CPU) are rendered on every scrape.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from envlock.daemon.results import KINDS, OUTCOMES, safe_text
from envlock.daemon.state import DaemonState

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Series per kind for drifted fields: a golden decides how many differences there are (20,000
# fake distributions), and a Prometheus series each would swamp every scrape and the TSDB. The
# count is always exported; the full list is /drift.
MAX_DRIFT_SERIES = 100
# prometheus_client's own switch for the ``_created`` series of counters (read as it reads it)
_CREATED = os.environ.get("PROMETHEUS_DISABLE_CREATED_SERIES", "False").lower() not in ("true", "1", "t")

Metric = GaugeMetricFamily | CounterMetricFamily


def _gauge(name: str, documentation: str, labels: Iterable[str] = (),
           samples: Iterable[tuple[Iterable[str], float]] = ()) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=list(labels))
    for values, value in samples:
        family.add_metric(list(values), value)
    return family


def health_families(state: DaemonState, now: float) -> Iterator[Metric]:
    yield GaugeMetricFamily("envlock_healthy", "1 when /healthz answers 200", value=1 if state.health(now)[0] else 0)


def _probe_families(state: DaemonState) -> Iterator[Metric]:
    verify = state.probes_from
    # a probe not run here (e.g. a GPU probe on a CPU node) is neither pass nor fail
    probes = [p for p in verify.probes if p.status != "skipped"] if verify else []
    yield _gauge("envlock_probe_max_ulp", "Largest ULP distance from the golden in the last verify", ["probe"],
                 [([safe_text(p.name) or ""], p.max_ulp) for p in probes if p.max_ulp is not None])
    yield _gauge("envlock_probe_max_rel_error", "Largest error relative to the golden's scale in the last verify",
                 ["probe"], [([safe_text(p.name) or ""], p.max_rel_error) for p in probes
                             if p.max_rel_error is not None])
    yield _gauge("envlock_probe_ok", "1 when the probe reproduced in the last verify", ["probe"],
                 [([safe_text(p.name) or ""], 1 if p.status in ("identical", "within_tolerance") else 0)
                  for p in probes])


def check_families(state: DaemonState, created: float) -> Iterator[Metric]:
    """Every series but health, from ``state`` (``created``: when this process's counters started)."""
    latest = state.latest.items()
    yield _gauge("envlock_check_ok", "1 when the last check of this kind passed", ["kind"],
                 [([kind], 1 if r.ok else 0) for kind, r in latest])
    yield _gauge("envlock_check_last_timestamp_seconds", "When the last check of this kind started (epoch)", ["kind"],
                 [([kind], r.started_at) for kind, r in latest])
    yield _gauge("envlock_check_last_duration_seconds", "How long the last check of this kind took", ["kind"],
                 [([kind], r.duration_s) for kind, r in latest])
    checks = CounterMetricFamily("envlock_checks", "Checks run by this process, by kind and outcome",
                                 labels=["kind", "outcome"])
    for kind in KINDS:
        for outcome in OUTCOMES:  # zeros too, so rate() works from the start
            checks.add_metric([kind, outcome], state.counts.get((kind, outcome), 0),
                              created=created if _CREATED else None)
    yield checks
    yield GaugeMetricFamily("envlock_verify_running", "1 while a verify child is running",
                            value=1 if state.verify_running_since is not None else 0)
    yield from _probe_families(state)
    conclusive = state.conclusive.items()
    yield _gauge("envlock_drifted_field", "1 for each manifest field or probe that differs from the golden",
                 ["kind", "path", "severity"],
                 [([kind, safe_text(item.path) or "", safe_text(item.severity) or ""], 1)
                  for kind, result in conclusive for item in result.drift[:MAX_DRIFT_SERIES]])
    yield _gauge("envlock_drifted_fields", "How many manifest fields and probes differ from the golden now (all of "
                 f"them, while envlock_drifted_field shows at most {MAX_DRIFT_SERIES})", ["kind"],
                 [([kind], len(result.drift)) for kind, result in conclusive])
    yield _gauge("envlock_golden_info", "The golden being checked against", ["digest"],
                 [([safe_text(state.golden_digest) or ""], 1)])
    # An info series: at most ONE per node at a time (its labels change when the class does; the
    # old series then goes stale in Prometheus). Absent until a verify reported a class.
    numeric = state.numeric
    yield _gauge("envlock_numeric_class", "This node's numeric class (envlock.numeric) from the last conclusive "
                 "verify, for the golden's probes under that profile", ["class", "profile"],
                 [([numeric.numeric_class or "", numeric.numeric_profile or ""], 1)] if numeric else [])
    # One series per CPU the cores check covers (a machine's CPU count: bounded by the kernel, not a file).
    cores = state.conclusive.get("cores")
    yield _gauge("envlock_cpu_healthy", "1 when the CPU gave the same bits as the others in the last cores check "
                 "(0: it deviates from the majority, or CPUs disagree with no majority)", ["cpu"],
                 [([str(cpu.cpu)], 1 if cpu.healthy else 0) for cpu in (cores.cpus if cores else [])])


def _exported(state: DaemonState) -> tuple[object, ...]:
    """What ``check_families`` reads. A change to any of it is a new object (the state is never
    changed in place), so the same objects make the same text."""
    return (state.latest, state.conclusive, state.counts, state.probes_from, state.golden,
            state.verify_running_since is None)


class _Families:
    """Families already made, as generate_latest wants them (anything with ``collect``)."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


class DaemonCollector(Collector):
    """envlock's series, read from ``read_state()`` at each collection."""

    def __init__(self, read_state: Callable[[], DaemonState], *, clock: Callable[[], float] = time.time) -> None:
        self.read_state = read_state
        self.clock = clock
        self.created = clock()

    def collect(self) -> Iterator[Metric]:
        state = self.read_state()
        yield from health_families(state, self.clock())
        yield from check_families(state, self.created)


class Metrics:
    """The daemon's registry (its collector) and the process series, rendered for /metrics."""

    def __init__(self, read_state: Callable[[], DaemonState], *, clock: Callable[[], float] = time.time) -> None:
        self.collector = DaemonCollector(read_state, clock=clock)
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(self.collector)
        self.process_registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.process_registry)  # process_resident_memory_bytes etc. of the daemon
        self._cached: tuple[tuple[object, ...], bytes] | None = None  # (_exported(state), check_families' text)

    def render(self) -> bytes:
        """What ``generate_latest(self.registry)`` gives, then the process series; the check
        series' text is made again only when what they show changed."""
        collector = self.collector
        state = collector.read_state()
        exported, cached = _exported(state), self._cached
        if cached is None or any(a is not b for a, b in zip(cached[0], exported, strict=True)):
            cached = (exported, generate_latest(_Families(check_families(state, collector.created))))
            self._cached = cached  # one reference assignment: concurrent scrapes at worst render twice
        health = generate_latest(_Families(health_families(state, collector.clock())))
        return health + cached[1] + generate_latest(self.process_registry)

