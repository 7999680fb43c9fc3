"""Prometheus metrics in a registry of the daemon's own (never the global default one), so
tests and embedders get exactly envlock's series and nothing registered elsewhere leaks in.

The check series change a few times a minute but may be scraped many times a second (several
Prometheus servers, dashboards, a load balancer's probe): their text is rendered once per change
and cached; only the process series (RSS, CPU) are rendered on every scrape.
"""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector, generate_latest

from envlock.daemon.results import KINDS, OUTCOMES, CheckResult, safe_text

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Series per kind for drifted fields: a golden decides how many differences there are (20,000
# fake distributions), and a Prometheus series each would swamp every scrape and the TSDB. The
# count is always exported; the full list is /drift.
MAX_DRIFT_SERIES = 100


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.process_registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.process_registry)  # process_resident_memory_bytes etc. of the daemon
        self._lock = threading.Lock()
        self._version = 0  # bumped on every change; a rendering is cached only if none happened meanwhile
        self._cached: tuple[int, bytes] | None = None
        self.healthy = Gauge("envlock_healthy", "1 when /healthz answers 200", registry=reg)
        self.check_ok = Gauge("envlock_check_ok", "1 when the last check of this kind passed", ["kind"], registry=reg)
        self.last_time = Gauge(
            "envlock_check_last_timestamp_seconds", "When the last check of this kind started (epoch)", ["kind"],
            registry=reg,
        )
        self.last_duration = Gauge(
            "envlock_check_last_duration_seconds", "How long the last check of this kind took", ["kind"], registry=reg
        )
        self.checks = Counter(
            "envlock_checks", "Checks run by this process, by kind and outcome", ["kind", "outcome"], registry=reg
        )
        self.verify_running = Gauge("envlock_verify_running", "1 while a verify child is running", registry=reg)
        self.probe_max_ulp = Gauge(
            "envlock_probe_max_ulp", "Largest ULP distance from the golden in the last verify", ["probe"], registry=reg
        )
        self.probe_max_rel_error = Gauge(
            "envlock_probe_max_rel_error", "Largest error relative to the golden's scale in the last verify",
            ["probe"], registry=reg,
        )
        self.probe_ok = Gauge(
            "envlock_probe_ok", "1 when the probe reproduced in the last verify", ["probe"], registry=reg
        )
        self.drifted = Gauge(
            "envlock_drifted_field", "1 for each manifest field or probe that differs from the golden",
            ["kind", "path", "severity"], registry=reg,
        )
        self.drifted_count = Gauge(
            "envlock_drifted_fields", "How many manifest fields and probes differ from the golden now (all of them, "
            f"while envlock_drifted_field shows at most {MAX_DRIFT_SERIES})", ["kind"], registry=reg,
        )
        self.golden = Gauge("envlock_golden_info", "The golden being checked against", ["digest"], registry=reg)
        # An info series: at most ONE per node at a time (its labels change when the class does; the
        # old series then goes stale in Prometheus). Absent until a verify reported a class.
        self.numeric_class = Gauge(
            "envlock_numeric_class", "This node's numeric class (envlock.numeric) from the last conclusive verify, "
            "for the golden's probes under that profile", ["class", "profile"], registry=reg,
        )
        # One series per CPU the cores check covers (a machine's CPU count: bounded by the kernel, not a file).
        self.cpu_healthy = Gauge(
            "envlock_cpu_healthy", "1 when the CPU gave the same bits as the others in the last cores check "
            "(0: it deviates from the majority, or CPUs disagree with no majority)", ["cpu"], registry=reg,
        )
        for kind in KINDS:
            for outcome in OUTCOMES:
                self.checks.labels(kind=kind, outcome=outcome)  # export zeros, so rate() works from the start

    def _changed(self) -> None:
        with self._lock:
            self._version += 1
            self._cached = None

    def set_golden(self, digest: str | None) -> None:
        self.golden.clear()
        self.golden.labels(digest=safe_text(digest) or "").set(1)
        self._changed()

    def set_verify_running(self, running: bool) -> None:
        self.verify_running.set(1 if running else 0)
        self._changed()

    def set_healthy(self, healthy: bool) -> None:
        self.healthy.set(1 if healthy else 0)
        self._changed()

    def set_numeric_class(self, result: CheckResult | None) -> None:
        """The class series from a conclusive verify (None: a new golden, no class known yet)."""
        self.numeric_class.clear()
        if result is not None and result.numeric_class and result.numeric_profile:
            self.numeric_class.labels(result.numeric_class, result.numeric_profile).set(1)
        self._changed()

    def restore(self, result: CheckResult) -> None:
        """A result from before a restart: its state, without counting it as a check of this process."""
        self.check_ok.labels(kind=result.kind).set(1 if result.ok else 0)
        self.last_time.labels(kind=result.kind).set(result.started_at)
        self.last_duration.labels(kind=result.kind).set(result.duration_s)
        if result.kind == "verify" and result.conclusive:
            self.set_numeric_class(result)
        self._set_cpus(result)
        self._changed()

    def _set_cpus(self, result: CheckResult) -> None:
        """The per-CPU series from a conclusive cores check (one that could not run changes none)."""
        if result.kind != "cores" or not result.conclusive:
            return
        self.cpu_healthy.clear()
        for cpu in result.cpus:
            self.cpu_healthy.labels(cpu=str(cpu.cpu)).set(1 if cpu.healthy else 0)

    def observe(self, result: CheckResult) -> None:
        kind = result.kind
        self.check_ok.labels(kind=kind).set(1 if result.ok else 0)
        self.last_time.labels(kind=kind).set(result.started_at)
        self.last_duration.labels(kind=kind).set(result.duration_s)
        self.checks.labels(kind=kind, outcome=result.outcome).inc()
        if kind == "verify" and result.conclusive:
            for gauge in (self.probe_max_ulp, self.probe_max_rel_error, self.probe_ok):
                gauge.clear()
            for probe in result.probes:
                if probe.status == "skipped":
                    continue  # not run here (e.g. a GPU probe on a CPU node): neither pass nor fail
                reproduced = probe.status in ("identical", "within_tolerance")
                name = safe_text(probe.name)
                self.probe_ok.labels(probe=name).set(1 if reproduced else 0)
                if probe.max_ulp is not None:
                    self.probe_max_ulp.labels(probe=name).set(probe.max_ulp)
                if probe.max_rel_error is not None:
                    self.probe_max_rel_error.labels(probe=name).set(probe.max_rel_error)
            self.set_numeric_class(result)
        self._set_cpus(result)
        self._changed()  # after the updates: a rendering that overlapped them is never cached

    def set_drift(self, by_kind: dict[str, CheckResult]) -> None:
        """Rebuild the drifted-field series from the last conclusive result of each kind."""
        self.drifted.clear()
        self.drifted_count.clear()
        for kind, result in by_kind.items():
            self.drifted_count.labels(kind=kind).set(len(result.drift))
            for item in result.drift[:MAX_DRIFT_SERIES]:
                self.drifted.labels(kind=kind, path=safe_text(item.path), severity=safe_text(item.severity)).set(1)
        self._changed()

    def render(self) -> bytes:
        with self._lock:
            version, cached = self._version, self._cached
        if cached is None:
            text = generate_latest(self.registry)
            with self._lock:
                if self._version == version:
                    self._cached = (version, text)
        else:
            text = cached[1]
        return text + generate_latest(self.process_registry)
