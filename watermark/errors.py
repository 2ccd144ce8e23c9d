"""User-facing errors and all-or-nothing file writes, shared by every antidistill package."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


class UserError(Exception):
    """Bad input from a user: the CLI prints the message as one line and exits non-zero."""


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8"):
    """Yield a file object whose content replaces `path` only if the block finishes.

    The data goes to a temporary file in the same folder, then `os.replace` swaps it in, so a
    crash or an exception leaves either the old file or none — never half of a new one.
    """
    path = Path(path)
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
