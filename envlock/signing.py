"""Signed goldens: Ed25519 signatures made with OpenSSH key files.

Why this format: Ed25519 through the ``cryptography`` package needs no external binary (slim
images often have no ``ssh-keygen``), and the keys are the ones people already make and
manage with ``ssh-keygen -t ed25519`` (private ``id_ed25519``, public ``id_ed25519.pub``).
Keys are named by their OpenSSH fingerprint (``SHA256:...``), exactly what ``ssh-keygen -lf``
prints, so a user can check which key is which with tools they trust.

The signature lives IN the golden (``Golden.signature``, outside the integrity digest): a
detached ``.sig`` would have to travel with every copy (``envlock build`` bakes the golden into
an image) and could never be replaced atomically together with the golden the daemon re-reads.
It signs the integrity digest (a sha256 over the canonical JSON of everything else, which
``load_golden`` checks against the file as written), prefixed with a context string so the
signature cannot be replayed as a signature of anything else. Signing the digest rather than a
re-serialisation keeps old signatures valid when later versions add optional fields.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from envlock.errors import BadFileError, SignatureError
from envlock.golden import Golden, GoldenSignature, compute_golden_digest, seal

SIGNATURE_CONTEXT = b"envlock.golden.signature.v1\n"
KEY_TYPE: Final = "ssh-ed25519"
MAX_KEY_FILE_BYTES = 256 * 1024  # a key file, or a file of public keys; never a reason to read a device


@dataclass(frozen=True)
class TrustedKey:
    fingerprint: str
    key: object  # cryptography's Ed25519PublicKey
    source: str  # "FILE:LINE", for messages


def fingerprint_of_blob(blob: bytes) -> str:
    """OpenSSH's fingerprint of a public key blob: what ``ssh-keygen -lf`` prints."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii").rstrip("=")


def _public_blob(public_key: object) -> bytes:
    # lazy: cryptography loads only to sign or to check a signature (most goldens are unsigned)
    from cryptography.hazmat.primitives import serialization

    line = public_key.public_bytes(serialization.Encoding.OpenSSH,  # type: ignore[attr-defined]
                                   serialization.PublicFormat.OpenSSH)
    return base64.b64decode(line.split()[1])


def read_key_file(path: Path | str) -> bytes:
    """A key file's bytes: regular files only (a directory, FIFO or device would fail, hang or never
    end), at most ``MAX_KEY_FILE_BYTES`` read; every problem is a one-line ``BadFileError`` (exit 2)."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise BadFileError(path, "no such file") from None
    except IsADirectoryError:
        raise BadFileError(path, "is a directory, not a key file") from None
    except OSError as exc:
        raise BadFileError(path, f"cannot read ({exc.strerror or exc})") from None
    try:
        # fstat on the descriptor (not the path, which may change): a directory opens fine on Linux,
        # and os.fdopen would then raise IsADirectoryError.
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise BadFileError(path, "is a directory, not a key file")
        if not stat.S_ISREG(mode):
            raise BadFileError(path, "not a regular file (a key must be a plain file)")
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_KEY_FILE_BYTES:
            chunk = os.read(fd, MAX_KEY_FILE_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise BadFileError(path, f"cannot read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > MAX_KEY_FILE_BYTES:
        raise BadFileError(path, f"too large for a key file (over {MAX_KEY_FILE_BYTES} bytes)")
    if not data.strip():
        raise BadFileError(path, "file is empty")
    return data


def load_signing_key(path: Path | str) -> object:
    """An unencrypted Ed25519 private key in OpenSSH format (``ssh-keygen -t ed25519 -N ''``)."""
    # lazy: cryptography loads only to sign or to check a signature (most goldens are unsigned)
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    data = read_key_file(path)
    if data.lstrip().startswith(b"ssh-"):
        raise BadFileError(path, "is a public key; --sign needs the private key (e.g. id_ed25519, not .pub)")
    try:
        key = serialization.load_ssh_private_key(data, password=None)
    except TypeError:  # cryptography: "Key is password-protected, but password was not provided."
        raise BadFileError(path, "the private key is encrypted; envlock signs with an unencrypted key "
                                 "(a CI secret), e.g. ssh-keygen -t ed25519 -N ''") from None
    except (ValueError, binascii.Error, UnicodeError):
        raise BadFileError(path, "not an OpenSSH private key (make one with ssh-keygen -t ed25519)") from None
    except Exception as exc:  # cryptography's parser may raise its own types on hostile input
        raise BadFileError(path, f"not a usable OpenSSH private key ({type(exc).__name__})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise BadFileError(path, f"wrong key type ({type(key).__name__.removesuffix('PrivateKey')}); "
                                 "envlock signs with Ed25519 keys (ssh-keygen -t ed25519)")
    return key


def _parse_public_line(line: str, where: str) -> TrustedKey:
    # lazy: cryptography loads only to sign or to check a signature (most goldens are unsigned)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    tokens = line.split()
    # authorized_keys / allowed_signers lines may carry options or a principal before the key type
    index = next((i for i, t in enumerate(tokens) if t.startswith(("ssh-", "ecdsa-", "sk-"))), None)
    if index is None or index + 1 >= len(tokens):
        raise BadFileError(where, "not an OpenSSH public key line (expected 'ssh-ed25519 AAAA...')")
    key_type = tokens[index]
    if key_type != KEY_TYPE:
        raise BadFileError(where, f"wrong key type ({key_type[:40]}); trusted keys must be ssh-ed25519")
    try:
        blob = base64.b64decode(tokens[index + 1], validate=True)
    except (binascii.Error, ValueError):
        raise BadFileError(where, "the public key is not valid base64") from None
    # The wire format: string "ssh-ed25519", string key (32 bytes); nothing else.
    expected_head = len(KEY_TYPE).to_bytes(4, "big") + KEY_TYPE.encode() + (32).to_bytes(4, "big")
    if len(blob) != len(expected_head) + 32 or not blob.startswith(expected_head):
        raise BadFileError(where, "not a valid ssh-ed25519 public key")
    public = Ed25519PublicKey.from_public_bytes(blob[len(expected_head):])
    return TrustedKey(fingerprint=fingerprint_of_blob(blob), key=public, source=where)


def load_trusted_keys(paths: Iterable[Path | str]) -> list[TrustedKey]:
    """Public keys from files of OpenSSH public key lines (``id_ed25519.pub``, or one per line)."""
    keys: list[TrustedKey] = []
    for path in paths:
        data = read_key_file(path)
        if b"PRIVATE KEY" in data:
            raise BadFileError(path, "is a private key; --trusted-key needs the public key (.pub)")
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError:
            raise BadFileError(path, "not an OpenSSH public key file (not ASCII text)") from None
        found = 0
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip() and not line.lstrip().startswith("#"):
                keys.append(_parse_public_line(line, f"{path}:{number}"))
                found += 1
        if not found:
            raise BadFileError(path, "no public key in it")
    return keys


def _message(golden: Golden) -> bytes:
    return SIGNATURE_CONTEXT + golden.digest.encode("ascii", errors="replace")


def sign_golden(golden: Golden, private_key: object) -> Golden:
    """The golden sealed and with ``signature`` set (the integrity digest excludes the signature)."""
    if golden.digest != compute_golden_digest(golden):
        golden = seal(golden)
    signature = private_key.sign(_message(golden))  # type: ignore[attr-defined]
    record = GoldenSignature(algorithm=KEY_TYPE, key_fingerprint=fingerprint_of_blob(
        _public_blob(private_key.public_key())),  # type: ignore[attr-defined]
        value=base64.b64encode(signature).decode("ascii"))
    return golden.model_copy(update={"signature": record})


def _names(keys: Sequence[TrustedKey]) -> str:
    return ", ".join(dict.fromkeys(k.fingerprint for k in keys))


def check_signature(golden: Golden, path: Path | str, trusted: Sequence[TrustedKey]) -> str:
    """Require a valid signature by one of ``trusted``; return the signer's fingerprint.

    Raises ``SignatureError`` (exit 2) naming the key found and the keys expected.
    """
    # lazy: cryptography loads only to sign or to check a signature (most goldens are unsigned)
    from cryptography.exceptions import InvalidSignature

    record = golden.signature
    if record is None:
        raise SignatureError(path, f"golden is unsigned; expected a signature by {_names(trusted)}")
    matching = [k for k in trusted if k.fingerprint == record.key_fingerprint]
    if not matching:
        raise SignatureError(path, f"golden is signed by {record.key_fingerprint}, not by a trusted key "
                                   f"(expected {_names(trusted)})")
    try:
        signature = base64.b64decode(record.value, validate=True)
        matching[0].key.verify(signature, _message(golden))  # type: ignore[attr-defined]
    except (InvalidSignature, binascii.Error, ValueError):
        raise SignatureError(path, f"signature by {record.key_fingerprint} does not verify: the golden was "
                                   "changed after it was signed") from None
    return record.key_fingerprint


def signature_note(golden: Golden) -> str:
    """One line for a report when no key was required: unsigned, or signed but not checked."""
    if golden.signature is None:
        return ("golden is unsigned: anyone who can recompute its digest could have made it "
                "(sign with capture --golden --sign KEY, require with --trusted-key PUB)")
    return (f"golden is signed by {golden.signature.key_fingerprint}; the signature was not checked "
            "(pass --trusted-key PUB to require it)")
