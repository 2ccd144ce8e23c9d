"""Watermark keys: secret bytes in, 64-bit words and a public fingerprint out."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError, read_bytes

KEY_ENV = "ANTIDISTILL_KEY"


@dataclass(frozen=True)
class Key:
    """A secret watermark key. Never printed; reports carry only `fingerprint`."""

    secret: bytes

    def __post_init__(self):
        if not isinstance(self.secret, bytes) or len(self.secret) == 0:
            raise UserError("a watermark key must be non-empty bytes")

    def __repr__(self) -> str:  # keep secrets out of logs and tracebacks
        return f"Key(fingerprint={self.fingerprint})"

    @property
    def fingerprint(self) -> str:
        """First 16 hex digits of SHA-256 over a domain tag and the key: safe to publish."""
        return hashlib.sha256(b"antidistill/fingerprint\0" + self.secret).hexdigest()[:16]

    def word(self, label: str) -> int:
        """A 64-bit word derived from the key for one purpose (domain-separated by `label`)."""
        digest = hashlib.sha256(b"antidistill/word\0" + label.encode() + b"\0" + self.secret).digest()
        return int.from_bytes(digest[:8], "little")

    @classmethod
    def from_text(cls, text: str) -> "Key":
        return cls(text.encode("utf-8"))


def load_key(key_file: str | os.PathLike | None = None) -> Key:
    """Read the key from `key_file`, else from $ANTIDISTILL_KEY; a clear error if neither is set.

    A key file's trailing newline is ignored so `echo secret > key` and `printf secret > key` agree.
    """
    if key_file is not None:
        path = Path(key_file)
        if not path.exists():
            raise UserError(f"key file {path} does not exist; pass --key-file PATH or set {KEY_ENV}")
        secret = read_bytes(path, "key file").rstrip(b"\r\n")
        if not secret:
            raise UserError(f"key file {path} is empty; put the secret key bytes in it")
        return Key(secret)
    env = os.environb.get(KEY_ENV.encode()) if os.supports_bytes_environ else os.environ.get(KEY_ENV, "").encode()
    if env:  # the raw bytes: a key that is not valid UTF-8 is still a key
        return Key(env)
    raise UserError(f"no watermark key: pass --key-file PATH or set the {KEY_ENV} environment variable")
