"""Where built artifacts (tokenizer, demo teacher) live, keyed by a hash of what built them."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from antidistill.watermark.errors import UserError

CACHE_ENV = "ANTIDISTILL_CACHE"


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """`cache_dir`, else $ANTIDISTILL_CACHE, else ~/.cache/antidistill (created if missing)."""
    root = Path(cache_dir or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "antidistill")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cache folder {root} cannot be created ({err.strerror}); set {CACHE_ENV} "
                        "to a writable folder") from None
    if not os.access(root, os.W_OK):
        raise UserError(f"cache folder {root} is not writable; set {CACHE_ENV} to a writable folder")
    return root


def config_hash(config: dict) -> str:
    """Stable short hash of a JSON-able config (sorted keys): the cache key."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def build_once(target: Path, build) -> Path:
    """Return `target`, building it first with `build(tmp_dir)` if absent.

    The build writes into a temporary sibling that is renamed into place only when complete, so an
    interrupted build leaves nothing that looks finished; a concurrent builder that wins the rename
    is kept.
    """
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        build(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def check_out_dir(out: Path) -> None:
    """Refuse an output folder that could not be created, without creating it yet (a refused
    command then leaves no empty folder behind)."""
    parent = out
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"cannot create output folder {out} ({parent} is not a folder); choose another --out")
    if not os.access(parent, os.W_OK):
        raise UserError(f"output folder {parent} is not writable; choose another --out")


def ensure_out_dir(out: Path) -> None:
    """Create the output folder of a long stage, or stop with one clear line if it cannot be written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create output folder {out} ({err.strerror}); choose a writable --out") from None
    if not os.access(out, os.W_OK):
        raise UserError(f"output folder {out} is not writable; choose another --out")
