"""Watermark keys: secret bytes in, 64-bit words and a public fingerprint out."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError, check_regular_file, read_bytes

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
    """The key of a command with `--key-file`: `resolve_key`'s rule without a config."""
    return resolve_key(key_file)[0]


def resolve_key(key_file: str | os.PathLike | None = None, *, text: str | None = None,
                config_file: str | os.PathLike | None = None, default: Key | None = None,
                where: str = "config") -> tuple[Key, str]:
    """The one key rule of every command: (key, where it came from).

    Sources, in order: `--key-file` ("key-file"), a config's `[key] file` ("file") or `[key] text`
    ("text"), then $ANTIDISTILL_KEY ("env"). Any that are given must hold the same key: two that differ
    are refused in one line (an auditor must never test with a key other than the one they meant), and so
    is a config giving both `text` and `file`. With none given, `default` ("demo", a public key some
    presets use) or an error. An empty variable counts as unset. Only fingerprints appear in messages.
    """
    path = (str, os.PathLike)
    for name, value, kinds in (("key_file", key_file, path), ("config_file", config_file, path),
                               ("text", text, (str,))):
        if value is not None and not isinstance(value, kinds):
            raise UserError(f"the key's {name} must be {'a string' if name == 'text' else 'a path'}, "
                            f"got {type(value).__name__}")
    if text and config_file:
        raise UserError(f"{where}: [key] gives both text and file; keep one")
    given: list[tuple[str, str, Key]] = []  # (source, how to name it, key)
    if key_file is not None:
        given.append(("key-file", f"--key-file {key_file}", _read_key_file(key_file)))
    if config_file:
        name = f"{where} [key] file"
        given.append(("file", f"{name} {config_file}", _read_key_file(config_file, name)))
    elif text:
        given.append(("text", f"{where} [key] text", Key.from_text(text)))
    env = os.environb.get(KEY_ENV.encode()) if os.supports_bytes_environ else os.environ.get(KEY_ENV, "").encode()
    if env:  # the raw bytes: a key that is not valid UTF-8 is still a key
        given.append(("env", f"${KEY_ENV}", Key(env)))
    if given:
        (source, name, key), *rest = given
        for _, other, k in rest:
            if k != key:
                raise UserError(f"two different watermark keys: {name} (fingerprint {key.fingerprint}) and {other} "
                                f"(fingerprint {k.fingerprint}); give one (unset {KEY_ENV} or drop the other)")
        return key, source
    if default is not None:
        return default, "demo"
    raise UserError(f"no watermark key: pass --key-file PATH or set the {KEY_ENV} environment variable")


def _read_key_file(key_file: str | os.PathLike, what: str = "key file") -> Key:
    """A key file's bytes. Its trailing newline is ignored so `echo secret > key` and `printf secret > key`
    agree; it must be a regular file (a FIFO would wait for a writer forever)."""
    path = Path(key_file)
    if not path.exists() and not path.is_symlink():
        how = f"pass --key-file PATH or set {KEY_ENV}" if what == "key file" else "name an existing file"
        raise UserError(f"{what} {path} does not exist; {how}")
    check_regular_file(path, what)
    secret = read_bytes(path, what).rstrip(b"\r\n")
    if not secret:
        raise UserError(f"{what} {path} is empty; put the secret key bytes in it")
    return Key(secret)
