"""The content-addressed store every experiment builds into, and the log of what it did.

An artifact is a folder named by a hash of exactly the inputs it depends on
(`root/kind/<hash>`), so an unchanged config finds everything it needs and a changed setting
recomputes only its own branch. Small artifacts are built all or nothing (a temporary folder
renamed into place), so a killed build leaves nothing that looks finished; long ones (corpora,
trainings) resume inside their folders and are run as jobs (`jobs.py`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from antidistill.students.cache import build_once, config_hash

__all__ = ["StageLog", "Store"]


@dataclass
class StageLog:
    """What each stage did, item by item: 'cached' (found) or 'computed', with seconds. Reports
    print it and tests read it (a rerun must compute nothing)."""

    events: list = field(default_factory=list)

    def add(self, stage: str, item: str, status: str, seconds: float, threads: int | None = None) -> None:
        event = {"stage": stage, "item": item, "status": status, "seconds": round(seconds, 2)}
        if threads is not None:  # torch threads of the process that computed it
            event["threads"] = threads
        self.events.append(event)

    def computed(self, stage: str | None = None) -> list[str]:
        return [e["item"] for e in self.events if e["status"] == "computed" and (stage is None or e["stage"] == stage)]


class Store:
    """Artifact folders under `root`, addressed by (kind, inputs); `version` is part of every key
    (bump it when artifacts change meaning; None keeps keys without it). Owns the folder naming and
    the all-or-nothing build of small artifacts; `log` records each lookup."""

    def __init__(self, root: Path, version: int | None, log: StageLog | None = None):
        self.root = Path(root)
        self.version = version
        self.log = log if log is not None else StageLog()

    def path(self, kind: str, inputs: dict) -> Path:
        key = inputs if self.version is None else {"v": self.version, **inputs}
        return self.root / kind / config_hash(key)

    def build(self, stage: str, item: str, kind: str, inputs: dict, fn: Callable[[Path], None]) -> Path:
        """The artifact of (kind, inputs), built first by `fn(tmp_folder)` if absent."""
        target = self.path(kind, inputs)
        if target.is_dir():
            self.log.add(stage, item, "cached", 0.0)
            return target
        t0 = time.perf_counter()
        build_once(target, fn)
        self.log.add(stage, item, "computed", time.perf_counter() - t0)
        return target
