"""explain finds a cause nobody recorded (issue 16, item 4), for real.

The variable: ``GLIBC_TUNABLES``. glibc's loader reads it, and ``glibc.cpu.hwcaps=-FMA,-AVX2``
makes libm pick its SSE2 variants of sin/cos/tan over the FMA ones. TensorFlow computes float64
``tf.math.sin`` with the C library's ``sin`` (Eigen's scalar path), so a few elements in a
thousand move by one ULP. It is in no allow-list and no discovered list (asserted below), so no
manifest records it and verify can only say that nothing recorded explains the drift. No built-in
probe computes a float64 transcendental, so the probe is a user module's: the library that reads
the variable is TensorFlow's own C library, not the module.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from envlock.environ import discovered_names, is_allowed
from tests.helpers import env_with, envlock_cli

pytestmark = [pytest.mark.tf, pytest.mark.slow]

TUNABLES = "glibc.cpu.hwcaps=-FMA,-AVX2"
CREDENTIAL_LIKE_VALUE = "s3cr3t-value-never-shown"
MODULE = textwrap.dedent('''
    import numpy as np
    import tensorflow as tf

    from envlock import ProbeContext, probe


    @probe("user.libm_sin_f64", tags=["elementwise"], group="canary", dtype="float64",
           description="tf.math.sin of 65536 float64 values (the C library's sin)")
    def libm_sin_f64(ctx: ProbeContext) -> dict:
        x = np.random.default_rng(ctx.seed).uniform(-100.0, 100.0, 65536)
        return {"sin": tf.math.sin(tf.constant(x)).numpy()}
''')


def test_a_variable_nobody_records_is_bisected_and_proved(tensorflow_required: None, tmp_path: Path) -> None:
    assert not is_allowed("GLIBC_TUNABLES") and "GLIBC_TUNABLES" not in discovered_names()
    module, golden = tmp_path / "libm_probes.py", tmp_path / "golden.json"
    module.write_text(MODULE)
    clean = env_with(GLIBC_TUNABLES=None)
    proc = envlock_cli("capture", "--golden", "--probe-module", str(module), "--probes", "user.libm_sin_f64",
                       "--repeat", "1", "-o", str(golden), env=clean)
    assert proc.returncode == 0, proc.stderr[-2000:]

    # Set here, and with it a credential-looking variable (bisected like any other, value never shown).
    here = {**clean, "GLIBC_TUNABLES": TUNABLES, "MY_SERVICE_API_TOKEN": CREDENTIAL_LIKE_VALUE}
    report_file, env_file = tmp_path / "explain.json", tmp_path / "env.sh"
    proc = envlock_cli("explain", str(golden), "--probe-module", str(module), "--report", str(report_file),
                       "--emit-env", str(env_file), "--budget", "400", env=here)
    assert proc.returncode == 1, proc.stderr[-2000:]
    report = json.loads(report_file.read_text())
    verdict = next(p for p in report["verify"]["probes"] if p["name"] == "user.libm_sin_f64")
    assert verdict["status"] == "drift", "GLIBC_TUNABLES moved nothing: is libm's FMA variant in use here?"
    [finding] = report["findings"]
    assert finding["status"] == "fixed" and finding["fixed_by"] == "unset GLIBC_TUNABLES", finding
    assert finding["env"] == {"GLIBC_TUNABLES": None}
    proved = next(c for c in report["candidates"] if c["id"] == "unset GLIBC_TUNABLES")
    assert proved["status"] == "tried" and proved["kind"] == "unrecorded"
    assert proved["probes"]["user.libm_sin_f64"] == "identical"
    assert verdict["proved"].startswith("fixed by unset GLIBC_TUNABLES")
    assert any("GLIBC_TUNABLES" in n for n in report["notes"])
    # Delta debugging, not one child per variable.
    unrecorded = [c for c in report["candidates"] if c["kind"] == "unrecorded"]
    assert len(unrecorded) < len(here) / 2, [c["id"] for c in unrecorded]
    for text in (proc.stdout, report_file.read_text(), env_file.read_text()):
        assert CREDENTIAL_LIKE_VALUE not in text and TUNABLES not in text
    assert CREDENTIAL_LIKE_VALUE not in proc.stderr
    assert "unset GLIBC_TUNABLES" in env_file.read_text()
    # The text says it the way it says any proved cause.
    assert "user.libm_sin_f64: fixed by unset GLIBC_TUNABLES" in proc.stdout, proc.stdout
