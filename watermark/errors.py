"""User-facing errors and all-or-nothing file writes, shared by every antidistill package."""
from __future__ import annotations

import os
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path


class UserError(Exception):
    """Bad input from a user: the CLI prints the message as one line and exits non-zero."""


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8"):
    """Yield a file object whose content replaces `path` only if the block finishes.

    The data goes to a temporary file in the same folder, then `os.replace` swaps it in, so a
    crash or an exception leaves either the old file or none — never half of a new one. Only a
    regular file is ever replaced: a folder, a device (/dev/full), a pipe or a symbolic link at
    `path` is refused, since renaming over it would silently swap the thing itself for a file (a
    link is not followed either: the user names the real file).
    """
    path = Path(path)
    check_replaceable(path)
    if not path.parent.exists():
        raise UserError(f"output folder {path.parent} does not exist; create it first")
    if not os.access(path.parent, os.W_OK):
        raise UserError(f"output folder {path.parent} is not writable; choose another path")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the mode a plain open() would
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def check_replaceable(path: Path) -> None:
    """Refuse, in one line, to write over anything but a regular file (or nothing)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as err:
        raise UserError(f"cannot write {path} ({err.strerror})") from None
    if stat.S_ISREG(st.st_mode):
        return
    what = ("a folder" if stat.S_ISDIR(st.st_mode) else "a symbolic link" if stat.S_ISLNK(st.st_mode)
            else "a device or special file")
    raise UserError(f"{path} is {what}, not a regular file; give the path of a file to write")


def read_bytes(path: str | os.PathLike, what: str = "file") -> bytes:
    """The bytes of a user's file; a missing, unreadable or non-regular file -> one line naming it."""
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise UserError(f"{what} {path} is a folder; give a file") from None
    except OSError as err:
        raise UserError(f"cannot read {what} {path} ({err.strerror})") from None


def read_lines(path: str | os.PathLike, what: str = "file"):
    """(line number, text) for each line of a user's UTF-8 file, without its line ending.

    Lines are decoded one by one so that bad bytes are reported with their line number.
    """
    for n, raw in enumerate(read_bytes(path, what).splitlines(), start=1):
        try:
            yield n, raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise UserError(f"{path} line {n}: not valid UTF-8 (byte {raw[err.start]:#04x} at column "
                            f"{err.start + 1}); save the file as UTF-8") from None


def check_text(value: str, where: str, field: str) -> str:
    """A string from JSON must be encodable text: `\\ud800` escapes decode to lone surrogates."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise UserError(f"{where}: `{field}` holds a lone surrogate ({value[err.start]!a} at character "
                        f"{err.start + 1}), which is not text") from None
    return value
