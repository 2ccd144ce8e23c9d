"""User-facing errors and all-or-nothing file writes, shared by every antidistill package."""
from __future__ import annotations

import fcntl
import json
import os
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path

LOCK_FILE = ".antidistill.lock"  # a dot file: corpus and results readers skip it


class UserError(ValueError):
    """Bad input from a user: the CLI prints the message as one line and exits non-zero.

    A ValueError, so that a caller of the Python API that guards with `except ValueError` catches it.
    """


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8"):
    """Yield a file object whose content replaces `path` only if the block finishes.

    The data goes to a temporary file in the same folder, then `os.replace` swaps it in, so a
    crash or an exception leaves either the old file or none — never half of a new one. Only a
    regular file is ever replaced: a folder, a device (/dev/full), a pipe or a symbolic link at
    `path` is refused, since renaming over it would silently swap the thing itself for a file (a
    link is not followed either: the user names the real file).
    """
    path = check_writable(path)
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


def check_writable(path: str | os.PathLike) -> Path:
    """`atomic_write` could write `path`: its folder exists and is writable, and nothing but a regular
    file is there (a command checks its output paths with this before its long work starts)."""
    path = Path(path)
    check_replaceable(path)
    if not path.parent.exists():
        raise UserError(f"output folder {path.parent} does not exist; create it first")
    if not os.access(path.parent, os.W_OK):
        raise UserError(f"output folder {path.parent} is not writable; choose another path")
    return path


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


_HELD: dict[Path, int] = {}  # folders this process has locked -> depth (a nested lock of one folder is a no-op)


@contextmanager
def output_lock(folder: str | os.PathLike, what: str = "output folder"):
    """Hold an advisory lock on an output folder (a corpus, a student or a results folder) while writing it.

    A second process that asks for the same folder is refused at once, in one line naming the holder's pid,
    rather than interleaving its writes. The lock is `flock` on a dot file in the folder: the kernel drops
    it when its holder dies, so a killed run never blocks the rerun that resumes it. The folder is created
    if missing and, when this call created it and nothing else was written, removed again on exit.
    """
    folder = Path(folder)
    key = folder.resolve()
    if key in _HELD:  # this process already holds it (a stage inside a command that locked it)
        _HELD[key] += 1
        try:
            yield folder
        finally:
            _HELD[key] -= 1
        return
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create {what} {folder} ({err.strerror}); choose another --out") from None
    path = folder / LOCK_FILE
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            _remove_if_empty(folder, created)
            raise UserError(f"cannot lock {what} {folder} ({err.strerror}); choose a writable --out") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            _remove_if_empty(folder, created)
            raise UserError(f"{what} {folder} is being written by another process (pid {holder}); wait for it "
                            "to finish, or write elsewhere") from None
        # The holder before us unlinks the file as it lets go: a lock on that unlinked file guards nothing.
        try:
            now = os.stat(path)
            mine = os.fstat(fd)
            if (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino):
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _HELD[key] = 1
    try:
        yield folder
    finally:
        del _HELD[key]
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        os.close(fd)
        _remove_if_empty(folder, created)


def _remove_if_empty(folder: Path, created: bool) -> None:
    if created:
        try:
            folder.rmdir()
        except OSError:  # not empty: something was written, keep it
            pass


def check_regular_file(path: str | os.PathLike, what: str = "file") -> Path:
    """`path` names an existing regular file: checked with `os.stat` before anything opens it, since
    opening a FIFO waits for a writer forever and a device never ends."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise UserError(f"{what} {path} does not exist") from None
    except OSError as err:
        raise UserError(f"cannot read {what} {path} ({err.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise UserError(f"{what} {path} is a folder; give a file")
    if not stat.S_ISREG(st.st_mode):
        kind = "a named pipe (FIFO)" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) \
            else "a device or special file"
        raise UserError(f"{what} {path} is {kind}, not a regular file; give a regular file")
    return path


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


def read_json_objects(path: str | os.PathLike, what: str = "file"):
    """(line number, where, object) for each non-blank line of a user's JSONL file, `where` naming file
    and line; a line that is not a JSON object is one UserError naming it."""
    for lineno, line in read_lines(path, what):
        if not line.strip():
            continue
        where = f"{path} line {lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(f"{where}: not valid JSON ({err.msg})") from None
        if not isinstance(obj, dict):
            raise UserError(f"{where}: expected a JSON object")
        yield lineno, where, obj
