"""Secrets at rest: AES-256-GCM with a key ring.

The current key (``SHOPBOT_SECRET_KEY`` or the file ``SHOPBOT_SECRET_KEY_FILE``)
encrypts; it and the previous keys (``SHOPBOT_PREVIOUS_SECRET_KEYS``, comma
separated) decrypt. A sealed value is ``v1:<key id>:<base64(nonce | ciphertext)>``;
the key id says which key sealed it, so rotation is: make a new key current, keep
the old one as previous, run ``python -m admin keys rotate``, then drop the
old key. Every value is bound to where it is stored (the associated data), so a
sealed value copied to another row does not open.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

VERSION = "v1"
KEY_BYTES = 32
NONCE_BYTES = 12


class SecretKeyError(RuntimeError):
    """No usable key, a malformed key, or a value sealed with a key we do not have."""


def generate_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def parse_key(text: str) -> bytes:
    """A key as written in the environment: 32 bytes, URL-safe base64 (what ``keys generate`` prints)."""
    try:
        raw = base64.urlsafe_b64decode(text.strip().encode() + b"=" * (-len(text.strip()) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != KEY_BYTES:
        raise SecretKeyError("a secret key must be 32 random bytes in URL-safe base64 (python -m admin keys generate)")
    return raw


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"shopbot-key-id:" + key).hexdigest()[:8]


class SecretBox:
    def __init__(self, current: bytes, previous: Sequence[bytes] = ()):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self.current_id = key_id(current)
        self._keys = {key_id(k): AESGCM(k) for k in (*previous, current)}

    @classmethod
    def from_settings(cls, settings) -> SecretBox:
        text = settings.secret_key.get_secret_value() if settings.secret_key else None
        if text is None and settings.secret_key_file:
            path = Path(settings.secret_key_file)
            if not path.exists():
                raise SecretKeyError(f"SHOPBOT_SECRET_KEY_FILE points to {path}, which does not exist")
            text = path.read_text()
        if not text:
            raise SecretKeyError(
                "no secret key: set SHOPBOT_SECRET_KEY (or SHOPBOT_SECRET_KEY_FILE) to the output of "
                "`python -m admin keys generate`; stored channel credentials are encrypted with it"
            )
        previous = settings.previous_secret_keys.get_secret_value() if settings.previous_secret_keys else ""
        return cls(parse_key(text), [parse_key(p) for p in previous.split(",") if p.strip()])

    def seal(self, plaintext: str, where: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        ct = self._keys[self.current_id].encrypt(nonce, plaintext.encode(), where.encode())
        return f"{VERSION}:{self.current_id}:{base64.b64encode(nonce + ct).decode()}"

    def open(self, sealed: str, where: str) -> str:
        from cryptography.exceptions import InvalidTag

        version, kid, body = (sealed.split(":", 2) + ["", ""])[:3]
        if version != VERSION or kid not in self._keys:
            raise SecretKeyError(
                f"a credential was sealed with key {kid or '?'}, which is neither SHOPBOT_SECRET_KEY nor one of "
                "SHOPBOT_PREVIOUS_SECRET_KEYS"
            )
        raw = base64.b64decode(body)
        try:
            return self._keys[kid].decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], where.encode()).decode()
        except InvalidTag:
            raise SecretKeyError(f"a credential for {where} does not decrypt: it was altered or moved") from None

    def is_current(self, sealed: str) -> bool:
        return sealed.split(":", 2)[1:2] == [self.current_id]
