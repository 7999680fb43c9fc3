"""`envlock build -r LOCK` through the real wheelhouse (pip's resolution, the download, the
context): the lock's pins are pins and its sha256 are enforced.

The pinned package is a wheel built here (``i17demo``, found through ``PIP_FIND_LINKS``), so its
right and wrong sha256 are known; envlock's own runtime dependencies come from the index the
other build tests use (cached under ENVLOCK_TEST_CACHE, so a re-run resolves nothing).
"""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT, build_env, envlock_cli

pytestmark = [pytest.mark.slow]

GOLDEN = REPO_ROOT / "goldens" / "cpu-reference.json"


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def _demo_wheel(directory: Path) -> tuple[Path, str]:
    """A real, installable pure-Python wheel (PEP 427), and its sha256."""
    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / "i17demo-1.0-py3-none-any.whl"
    files = {
        "i17demo/__init__.py": b"VALUE = 17\n",
        "i17demo-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: i17demo\nVersion: 1.0\n",
        "i17demo-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: envlock-tests\nRoot-Is-Purelib: true\n"
                                       b"Tag: py3-none-any\n",
    }
    record = "\n".join([*(_record_line(name, data) for name, data in files.items()),
                        "i17demo-1.0.dist-info/RECORD,,"]) + "\n"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in files.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0)), data)
        archive.writestr(zipfile.ZipInfo("i17demo-1.0.dist-info/RECORD", date_time=(2026, 1, 1, 0, 0, 0)), record)
    return wheel, hashlib.sha256(wheel.read_bytes()).hexdigest()


def _build(tmp_path: Path, lock_text: str, links: Path) -> tuple[int, str, Path]:
    lock = tmp_path / "requirements.lock"
    lock.write_text(lock_text, encoding="utf-8")
    context = tmp_path / "ctx"
    proc = envlock_cli("build", "--golden", str(GOLDEN), "--context-only", str(context), "-r", str(lock),
                       "--wheelhouse", str(tmp_path / "house"), env=build_env(PIP_FIND_LINKS=str(links)),
                       timeout=1200)
    return proc.returncode, proc.stderr, context


def test_an_unpinned_line_is_exit_2_naming_it_before_any_pip(tmp_path: Path) -> None:
    code, stderr, context = _build(tmp_path, "six==1.17.0\nnumpy>=1\n", tmp_path / "links")
    assert code == 2, stderr
    [line] = stderr.strip().splitlines()
    assert line.startswith("envlock: error: ") and "line 2: numpy>=1: not pinned to one version" in line
    assert not (context / "requirements.lock").exists()


def test_a_wrong_sha256_fails_the_build_and_the_right_one_builds(tmp_path: Path) -> None:
    links = tmp_path / "links"
    wheel, right = _demo_wheel(links)
    wrong = hashlib.sha256(b"not the wheel").hexdigest()
    code, stderr, context = _build(tmp_path, f"i17demo==1.0 \\\n    --hash=sha256:{wrong}\n", links)
    assert code == 2, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("envlock: error: ") and "line 1: i17demo==1.0: the wheel i17demo-1.0-py3-none-any.whl" \
        f" has sha256 {right}, which the file does not allow ({wrong})" in last, stderr[-3000:]
    assert not (tmp_path / "house" / wheel.name).exists()  # refused before anything was downloaded
    code, stderr, context = _build(tmp_path, f"i17demo==1.0 --hash=sha256:{wrong} --hash=sha256:{right}\n", links)
    assert code == 0, stderr[-3000:]
    assert f"i17demo==1.0 \\\n    --hash=sha256:{right}" in (context / "requirements.lock").read_text()
    assert hashlib.sha256((context / "wheelhouse" / wheel.name).read_bytes()).hexdigest() == right
