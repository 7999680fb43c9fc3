"""Hypothesis settings for the fuzz layer: bounded, reproducible in CI, no example database.

``ENVLOCK_FUZZ_PROFILE`` picks a profile: ``ci`` (the default with CI set: derandomized, so a
failure in CI is the same failure on a laptop), ``dev`` (random each run), ``long`` (10x examples).
Each test fixes its own ``max_examples`` (``examples(n)``) so the layer's time stays bounded.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, settings

from tests.helpers import IN_CI

_COMMON = {
    "deadline": None,  # wall time is bounded per call by the properties themselves (subprocess timeouts)
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                              HealthCheck.function_scoped_fixture],
    "print_blob": True,
}
# No shrinking in ci/dev: it keeps a failing run as bounded as a passing one, and each input's
# repr already names its class and mutations. ``long`` shrinks, for a minimal example.
_NO_SHRINK = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target]
settings.register_profile("ci", derandomize=True, phases=_NO_SHRINK, **_COMMON)
settings.register_profile("dev", derandomize=False, phases=_NO_SHRINK, **_COMMON)
settings.register_profile("long", derandomize=False, **_COMMON)
settings.load_profile(os.environ.get("ENVLOCK_FUZZ_PROFILE") or ("ci" if IN_CI else "dev"))
