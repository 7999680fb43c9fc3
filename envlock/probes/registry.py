"""The probe registry: small seeded computations, each tagged with what it depends on.

A probe is a function ``fn(ctx) -> dict[str, numpy.ndarray]``. It never imports TensorFlow
at module import time (``envlock verify --list-probes`` and the parent process stay
TF-free); the child process hands it ``ctx.tf`` and ``ctx.np`` instead.

Each probe belongs to a *group*, taken from our measurements (docs/causes.md, docs/probes.md); the
table ``envlock.vocab.GROUPS`` holds what each group means and how verify reads its drift:

* ``stable`` -- RNG streams, tf.data order, weight init, TF elementwise ops, row reductions.
  They never moved under any configuration or hardware perturbation, only under version
  (or seed) changes. If one of them drifts, suspect versions or seeds first.
* ``canary`` -- matmul, conv gradients, big reductions, oneDNN-routed ops, XLA, training.
  They move with hardware, thread counts, oneDNN and XLA settings.
* ``hardware`` -- small fixed-input probes of the CPU's own arithmetic: Eigen's approximate
  reciprocal/rsqrt, division, sqrt, the normalisation inside softmax / layer norm / batch norm,
  and Eigen's cache-blocked contraction; and any probe that moved across CPU vendors with every
  version identical while no setting moved it. When only they (and canaries) move while the
  stable group holds, the CPU model is the cause, not a setting.

A group rests on measurements from both recorded machine kinds (an AMD EPYC Zen 4 and an Intel
Xeon with AMX), never one: ``MEASURED`` (envlock.probes.probe) holds what two-vendor data changed, and
tests/unit/test_probe_groups.py checks every built-in probe's group against both vendors' goldens.

Tags name the components a probe depends on; ``envlock.diff.Difference.components`` uses
the same vocabulary, which is how verify matches a drift to its likely causes.
"""

from __future__ import annotations

from types import ModuleType

from envlock.errors import BadInputError
from envlock.probes import (
    suite_compile,
    suite_gpu,
    suite_hardware,
    suite_layers,
    suite_linalg,
    suite_rng,
    suite_training,
)
from envlock.probes.probe import (
    KNOWN_TAGS,
    MEASURED,
    Group,
    Measured,
    Probe,
    ProbeContext,
    ProbeFn,
    ProbeSkipped,
    probe,
    registered_probes,
)

# The built-in suites, in the order probes run and are listed: stable controls first, then canaries,
# the hardware-arithmetic group, then the GPU probes. Importing a suite registered its probes (with
# envlock.probes.probe's decorator); none imports TensorFlow or numpy at import time. A new suite is
# a module and a row here (and its name in pyproject's layers, which tests/unit/test_probe_suites.py checks).
SUITES: tuple[ModuleType, ...] = (
    suite_rng,
    suite_linalg,
    suite_compile,
    suite_training,
    suite_layers,
    suite_hardware,
    suite_gpu,
)


def all_probes() -> dict[str, Probe]:
    """Every registered probe by name: the built-in suites in ``SUITES`` order, then the probes of
    user modules and entry points, in the order they registered."""
    registered = list(registered_probes().values())
    built_in = [p for suite in SUITES for p in registered if p.fn.__module__ == suite.__name__]
    suites = {suite.__name__ for suite in SUITES}
    return {p.name: p for p in [*built_in, *(p for p in registered if p.fn.__module__ not in suites)]}


def default_probe_names() -> list[str]:
    return list(all_probes())


def select_probes(names: list[str] | None) -> list[Probe]:
    """The probes called ``names`` (all when None); an unknown name is a ``BadInputError``."""
    registry = all_probes()
    if not names:
        return list(registry.values())
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise BadInputError(
            f"unknown probe(s): {', '.join(unknown)} (see `envlock verify --list-probes`)"
        )
    return [registry[n] for n in dict.fromkeys(names)]


def parse_probe_list(text: str | None) -> list[str] | None:
    """``"a,b c"`` -> ``["a", "b", "c"]``; None -> None (the whole suite).

    Given but naming no probe (``--probes ","``) is bad input, not "the whole suite".
    """
    if text is None:
        return None
    names = [part for chunk in text.split(",") for part in chunk.split()]
    if not names:
        raise BadInputError("--probes needs at least one probe name")
    return names


__all__ = ["KNOWN_TAGS", "MEASURED", "SUITES", "Group", "Measured", "Probe", "ProbeContext", "ProbeFn", "ProbeSkipped",
           "all_probes", "default_probe_names", "parse_probe_list", "probe", "select_probes"]
