"""Signed goldens through the real CLI: capture --golden --sign and verify --trusted-key with real
TensorFlow, and the refusals (each stops before TensorFlow starts)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from envlock.golden import load_golden, save_golden
from envlock.signing import load_signing_key, load_trusted_keys, sign_golden
from tests.helpers import DATA_DIR, REFERENCE_GOLDEN, envlock_cli, one_error_line, write_keypair

KEYS = DATA_DIR / "keys"


@pytest.mark.tf
def test_signed_golden_verifies_with_its_key(tensorflow_required: None, keypair: tuple[Path, Path],
                                             tmp_path: Path) -> None:
    private, public = keypair
    golden = tmp_path / "golden.json"
    cheap = ["--probes", "rng.numpy_legacy", "--repeat", "1"]
    proc = envlock_cli("capture", "--golden", "-o", str(golden), *cheap, "--sign", str(private))
    assert proc.returncode == 0, proc.stderr
    proc = envlock_cli("verify", str(golden), "--trusted-key", str(public), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert any("signed by trusted key SHA256:" in note for note in report["notes"])


# ---- refusals, each before TensorFlow starts -----------------------------------------------------


def test_verify_trusted_key_refuses_an_unsigned_golden(keypair: tuple[Path, Path]) -> None:
    proc = envlock_cli("verify", str(REFERENCE_GOLDEN), "--trusted-key", str(keypair[1]), "--json", timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    line = one_error_line(proc)
    assert "unsigned" in line and load_trusted_keys([keypair[1]])[0].fingerprint in line


def test_verify_trusted_key_refuses_another_signer(tmp_path: Path) -> None:
    golden = load_golden(REFERENCE_GOLDEN)
    signer, _ = write_keypair(tmp_path, "someone")
    _, fleet_pub = write_keypair(tmp_path, "fleet")
    path = tmp_path / "golden.json"
    save_golden(path, sign_golden(golden, load_signing_key(signer)))
    proc = envlock_cli("verify", str(path), "--trusted-key", str(fleet_pub), timeout=120)
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert load_trusted_keys([fleet_pub])[0].fingerprint in line and "not by a trusted key" in line


def test_capture_sign_with_an_encrypted_key_fails_before_the_probes(tmp_path: Path) -> None:
    proc = envlock_cli("capture", "--golden", "-o", str(tmp_path / "g.json"), "--sign", str(KEYS / "encrypted_ed25519"),
                       timeout=120)
    assert proc.returncode == 2 and "encrypted" in one_error_line(proc)
    assert not (tmp_path / "g.json").exists()


def test_build_and_watch_take_the_same_option(keypair: tuple[Path, Path], tmp_path: Path) -> None:
    for args in (["build", "--golden", str(REFERENCE_GOLDEN), "--context-only", str(tmp_path / "ctx")],
                 ["watch", "--golden", str(REFERENCE_GOLDEN), "--once", "--state-dir", str(tmp_path / "state")]):
        proc = envlock_cli(*args, "--trusted-key", str(keypair[1]), timeout=120)
        assert proc.returncode == 2, args
        assert "unsigned" in one_error_line(proc)
