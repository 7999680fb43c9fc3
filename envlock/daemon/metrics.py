"""Prometheus metrics in a registry of the daemon's own (never the global default one), so
tests and embedders get exactly envlock's series and nothing registered elsewhere leaks in."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector, generate_latest

from envlock.daemon.results import KINDS, OUTCOMES, CheckResult

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        ProcessCollector(registry=reg)  # process_resident_memory_bytes etc., for the daemon itself
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
        self.golden = Gauge("envlock_golden_info", "The golden being checked against", ["digest"], registry=reg)
        for kind in KINDS:
            for outcome in OUTCOMES:
                self.checks.labels(kind=kind, outcome=outcome)  # export zeros, so rate() works from the start

    def set_golden(self, digest: str | None) -> None:
        self.golden.clear()
        self.golden.labels(digest=digest or "").set(1)

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
                self.probe_ok.labels(probe=probe.name).set(1 if reproduced else 0)
                if probe.max_ulp is not None:
                    self.probe_max_ulp.labels(probe=probe.name).set(probe.max_ulp)
                if probe.max_rel_error is not None:
                    self.probe_max_rel_error.labels(probe=probe.name).set(probe.max_rel_error)

    def set_drift(self, by_kind: dict[str, CheckResult]) -> None:
        """Rebuild the drifted-field series from the last conclusive result of each kind."""
        self.drifted.clear()
        for kind, result in by_kind.items():
            for item in result.drift:
                self.drifted.labels(kind=kind, path=item.path, severity=item.severity).set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)
