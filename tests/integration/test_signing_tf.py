"""A signed golden end to end with real TensorFlow: capture --golden --sign, verify --trusted-key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.helpers import envlock_cli

pytestmark = pytest.mark.tf


def test_signed_golden_verifies_with_its_key(tensorflow_required: None, tmp_path: Path) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    private, public = tmp_path / "id_ed25519", tmp_path / "id_ed25519.pub"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                     serialization.PublicFormat.OpenSSH))
    golden = tmp_path / "golden.json"
    cheap = ["--probes", "rng.numpy_legacy", "--repeat", "1"]
    proc = envlock_cli("capture", "--golden", "-o", str(golden), *cheap, "--sign", str(private))
    assert proc.returncode == 0, proc.stderr
    proc = envlock_cli("verify", str(golden), "--trusted-key", str(public), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert any("signed by trusted key SHA256:" in note for note in report["notes"])
