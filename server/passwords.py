"""Password hashes for the auth file: salted scrypt, plus the older unsalted SHA-256 form.

A password is stored as ``scrypt$<n>$<r>$<p>$<salt base64>$<key base64>`` (see
:func:`hash_password`, or ``trackstream auth hash-password``). Checking one costs about 60 ms
of CPU and 16 MB by design, so :class:`AuthConfig` remembers credentials it has already verified
and the HTTP edge runs new ones off the event loop.

Tokens stay SHA-256 hex: they are 256-bit random strings, which no salt or slow hash makes
harder to guess, and a bearer request must be checked in microseconds.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from dataclasses import dataclass

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
KEY_BYTES = 32
_SCRYPT_MAXMEM = 256 * 1024 * 1024
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class PasswordHashError(ValueError):
    """A stored password hash that cannot be used; the message says what is wrong with it."""


@dataclass(frozen=True)
class PasswordHash:
    """One stored password: ``scheme`` is ``scrypt`` or ``sha256`` (legacy, unsalted)."""

    scheme: str
    key: bytes
    salt: bytes = b""
    n: int = 0
    r: int = 0
    p: int = 0

    def matches(self, password: str) -> bool:
        return hmac.compare_digest(self.key, self._derive(password))

    def _derive(self, password: str) -> bytes:
        secret = password.encode("utf-8")
        if self.scheme == "sha256":
            return hashlib.sha256(secret).digest()
        return hashlib.scrypt(secret, salt=self.salt, n=self.n, r=self.r, p=self.p, maxmem=_SCRYPT_MAXMEM,
                              dklen=len(self.key))

    @classmethod
    def parse(cls, text: str) -> "PasswordHash":
        """A ``scrypt$...`` string, or 64 lowercase hex digits (a bare SHA-256, the legacy form)."""
        if _SHA256_HEX.fullmatch(text):
            return cls("sha256", bytes.fromhex(text))
        parts = text.split("$")
        if len(parts) != 6 or parts[0] != "scrypt":
            raise PasswordHashError("expected 'scrypt$<n>$<r>$<p>$<salt>$<key>' (make one with "
                                    "`trackstream auth hash-password`)")
        try:
            n, r, p = (int(x) for x in parts[1:4])
            salt, key = base64.b64decode(parts[4], validate=True), base64.b64decode(parts[5], validate=True)
        except (ValueError, binascii.Error):
            raise PasswordHashError("n, r and p must be integers and salt and key base64") from None
        if not (2**10 <= n <= 2**20 and n & (n - 1) == 0) or not 1 <= r <= 32 or not 1 <= p <= 16:
            raise PasswordHashError(f"scrypt cost n={n} r={r} p={p} is out of range "
                                    "(n a power of two in 2^10..2^20, r 1..32, p 1..16)")
        if 128 * r * n * p > _SCRYPT_MAXMEM // 2:
            raise PasswordHashError(f"scrypt cost n={n} r={r} p={p} needs more than "
                                    f"{_SCRYPT_MAXMEM // 2 // 2**20} MB per check")
        if len(salt) < SALT_BYTES or len(key) < 16:
            raise PasswordHashError(f"salt must be at least {SALT_BYTES} bytes and key at least 16")
        return cls("scrypt", key, salt, n, r, p)


def hash_password(password: str, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """The auth file's form of ``password``: salted scrypt."""
    if not password:
        raise ValueError("an empty password cannot be hashed")
    salt = os.urandom(SALT_BYTES)
    key = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_SCRYPT_MAXMEM,
                         dklen=KEY_BYTES)
    return f"scrypt${n}${r}${p}${base64.b64encode(salt).decode()}${base64.b64encode(key).decode()}"
