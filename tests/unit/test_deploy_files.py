"""deploy/'s examples name what the daemon really exports: the Job's node labels are the NFD feature
file's keys with NFD's prefix, and the Prometheus rules read a series the daemon serves."""

from __future__ import annotations

import re

from envlock.daemon import nfd
from envlock.daemon.goldens import LoadedGolden
from envlock.daemon.metrics import Metrics
from envlock.daemon.results import CheckResult
from envlock.daemon.state import DaemonState
from tests.helpers import REPO_ROOT, metric_samples

DEPLOY = REPO_ROOT / "deploy"
NFD_PREFIX = "feature.node.kubernetes.io/"  # what nfd-master puts before a name without a namespace


def test_the_jobs_node_labels_are_the_features_the_daemon_writes() -> None:
    features = nfd.feature_lines(reproduces=True, healthy=True, fingerprint_digest=None, golden_digest=None,
                                 verify_outcome="pass", numeric_class="0eaa820319d5", numeric_profile="default")
    lines = (DEPLOY / "job-numeric-class.yaml").read_text().splitlines()
    keys = re.findall(r"key: ([^\s,}]+)", "\n".join(line for line in lines if not line.strip().startswith("#")))
    assert keys == [NFD_PREFIX + "envlock.numeric-class", NFD_PREFIX + "envlock.numeric-profile"]
    assert {key.removeprefix(NFD_PREFIX) for key in keys} <= set(features)


def test_the_rules_read_the_series_the_daemon_exports_with_its_labels() -> None:
    golden = LoadedGolden(manifest=None, digest="sha256:g", stat_key=(0, 0, 0))  # type: ignore[arg-type]
    state = DaemonState(golden_path="g", golden=golden).adopt(CheckResult(
        kind="verify", started_at=1.0, duration_s=1.0, outcome="drift", golden_digest="sha256:g",
        numeric_class="c6d2df55e9b4", golden_numeric_class="0eaa820319d5", numeric_profile="default"))
    metrics = Metrics(lambda: state)
    [(name, labels)] = [key for key in metric_samples(metrics.render().decode()) if key[0] == "envlock_numeric_class"]
    rules = (DEPLOY / "prometheus-rules.yaml").read_text()
    rule_blocks = re.split(r"\n\s*- (?:record|alert): ", rules)[1:]
    assert len(rule_blocks) == 4 and all(name in block for block in rule_blocks)
    assert {label for label, _ in labels} == {"class", "profile"}  # what the rules group by
    assert "expr: count by (profile) (count by (profile, class) (envlock_numeric_class))" in rule_blocks[0]
