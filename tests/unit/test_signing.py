"""Signed goldens (envlock.signing): real Ed25519 keys made in the test, real files.

No TensorFlow: the signing functions work on a golden object. The CLI's refusals are in
tests/integration/test_signing_cli.py.
"""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from envlock.errors import BadFileError
from envlock.golden import Golden, compute_golden_digest, load_golden, save_golden, seal
from envlock.signing import (
    SignatureError,
    check_signature,
    load_signing_key,
    load_trusted_keys,
    sign_golden,
    signature_note,
)
from tests.helpers import DATA_DIR, REFERENCE_GOLDEN, write_keypair

KEYS = DATA_DIR / "keys"


@pytest.fixture(scope="module")
def golden() -> Golden:
    return load_golden(REFERENCE_GOLDEN)


def test_fingerprint_is_the_one_ssh_keygen_prints() -> None:
    # `ssh-keygen -lf tests/data/keys/known_ed25519.pub` printed this fingerprint.
    (key,) = load_trusted_keys([KEYS / "known_ed25519.pub"])
    assert key.fingerprint == "SHA256:CRKXYQgbcxMNaxnSQYykduo/Z4paavWRNi4GBGrsD5o"


def test_signed_golden_round_trips_and_verifies(golden: Golden, keypair: tuple[Path, Path], tmp_path: Path) -> None:
    private, public = keypair
    signed = sign_golden(golden, load_signing_key(private))
    assert compute_golden_digest(signed) == golden.digest  # the digest does not cover the signature
    path = tmp_path / "signed.json"
    save_golden(path, signed)
    reloaded = load_golden(path)
    trusted = load_trusted_keys([public])
    assert check_signature(reloaded, path, trusted) == trusted[0].fingerprint
    assert "not checked" in signature_note(reloaded)


def test_unsigned_golden_is_written_without_a_signature_field(golden: Golden, tmp_path: Path) -> None:
    path = tmp_path / "unsigned.json"
    save_golden(path, golden)
    assert "signature" not in json.loads(path.read_text())
    assert "unsigned" in signature_note(load_golden(path))


def test_unsigned_golden_is_refused_when_a_key_is_required(golden: Golden, keypair: tuple[Path, Path]) -> None:
    trusted = load_trusted_keys([keypair[1]])
    with pytest.raises(SignatureError, match=re.escape(f"unsigned; expected a signature by {trusted[0].fingerprint}")):
        check_signature(golden, "g.json", trusted)


def test_other_key_is_named_with_the_expected_one(golden: Golden, tmp_path: Path) -> None:
    signer, _ = write_keypair(tmp_path, "ci")
    _, trusted_pub = write_keypair(tmp_path, "fleet")
    signed = sign_golden(golden, load_signing_key(signer))
    trusted = load_trusted_keys([trusted_pub])
    with pytest.raises(SignatureError) as info:
        check_signature(signed, "g.json", trusted)
    assert signed.signature is not None
    assert signed.signature.key_fingerprint in str(info.value) and trusted[0].fingerprint in str(info.value)


def test_content_changed_after_signing_fails_even_when_resealed(golden: Golden, keypair: tuple[Path, Path]) -> None:
    signed = sign_golden(golden, load_signing_key(keypair[0]))
    tampered = seal(signed.model_copy(update={"repeat": signed.repeat + 1}))  # digest recomputed: passes load
    with pytest.raises(SignatureError, match="does not verify"):
        check_signature(tampered, "g.json", load_trusted_keys([keypair[1]]))


def test_a_file_of_several_keys_trusts_each(golden: Golden, tmp_path: Path) -> None:
    first_priv, first_pub = write_keypair(tmp_path, "a")
    second_priv, second_pub = write_keypair(tmp_path, "b")
    keys_file = tmp_path / "trusted_keys"
    keys_file.write_text("# fleet CI keys\n\n" + first_pub.read_text() + "ci@x " + second_pub.read_text())
    trusted = load_trusted_keys([keys_file])
    assert len(trusted) == 2
    for private in (first_priv, second_priv):
        check_signature(sign_golden(golden, load_signing_key(private)), "g.json", trusted)


def test_encrypted_private_key_is_one_line() -> None:
    # tests/data/keys/encrypted_ed25519: a throwaway key made with `ssh-keygen -t ed25519 -N pw`.
    with pytest.raises(BadFileError, match="encrypted"):
        load_signing_key(KEYS / "encrypted_ed25519")


def test_rsa_private_key_is_refused_as_the_wrong_type(tmp_path: Path) -> None:
    path = tmp_path / "id_rsa"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                       serialization.NoEncryption()))
    with pytest.raises(BadFileError, match="wrong key type"):
        load_signing_key(path)
    pub = tmp_path / "id_rsa.pub"
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH))
    with pytest.raises(BadFileError, match="wrong key type"):
        load_trusted_keys([pub])


@pytest.mark.parametrize("content", [b"", b"\x00\xff" * 50, b"ssh-ed25519 !!!notbase64", b"ssh-ed25519 AAAA",
                                     b"ssh-ed25519 " + b"A" * 68, b"-----BEGIN OPENSSH PRIVATE KEY-----\nxx\n",
                                     b"garbage line\n", b"A" * (300 * 1024)])
def test_bad_key_files_are_one_line_bad_file_errors(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "key"
    path.write_bytes(content)
    for loader in (load_signing_key, lambda p: load_trusted_keys([p])):
        with pytest.raises(BadFileError) as info:
            loader(path)
        assert "\n" not in str(info.value)


def test_public_key_given_to_sign_and_private_to_trust(keypair: tuple[Path, Path]) -> None:
    private, public = keypair
    with pytest.raises(BadFileError, match="is a public key"):
        load_signing_key(public)
    with pytest.raises(BadFileError, match="is a private key"):
        load_trusted_keys([private])


def test_fifo_key_file_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "key.fifo"
    os.mkfifo(fifo)
    errors: list[BaseException] = []

    def attempt() -> None:
        try:
            load_trusted_keys([fifo])
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion below
            errors.append(exc)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), "reading a FIFO key file blocked"
    assert errors and isinstance(errors[0], BadFileError) and "regular file" in str(errors[0])
