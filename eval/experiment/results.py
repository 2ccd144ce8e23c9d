"""The typed results the report writers read: one dataclass of tables per command."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

CONCAT = ("audit", "audit_curves", "items")  # one table per student, stacked


@dataclass
class RunResults:
    """The tables of one run, as the report reads them; a table is None when its evaluation is off
    (or, for detectability and audits, when no protection has a detector)."""

    sweeps: dict
    quality: pd.DataFrame | None = None
    teacher_items: pd.DataFrame | None = None
    detectability: pd.DataFrame | None = None
    roc: pd.DataFrame | None = None
    lengths: pd.DataFrame | None = None
    audit: pd.DataFrame | None = None
    audit_curves: pd.DataFrame | None = None
    items: pd.DataFrame | None = None
    transfer: pd.DataFrame | None = None
    frontier: pd.DataFrame | None = None


@dataclass
class E1Results:
    """E1's tables: grades and audits of the mixed-corpus students, and the clean students' key nulls."""

    grades: pd.DataFrame
    audits: pd.DataFrame
    key_nulls: pd.DataFrame | None = None


@dataclass
class E2Results:
    """E2's tables: grades and audits of each scheme's student after each number of fine-tuning steps."""

    grades: pd.DataFrame
    audits: pd.DataFrame


@dataclass
class E4Results:
    """E4's tables: grades and audits per attack, the attacked corpora's sizes, and the adaptive
    attacker's grades against capability-denying protections (None when none is configured)."""

    grades: pd.DataFrame
    audits: pd.DataFrame
    sizes: pd.DataFrame | None = None
    denying: pd.DataFrame | None = None


@dataclass
class EvidenceResults:
    """The findings measured so far (a run cut short reports what it has)."""

    e1: E1Results | None = None
    e2: E2Results | None = None
    e4: E4Results | None = None

    def done(self) -> list[str]:
        return [name for name in ("e4", "e2", "e1") if getattr(self, name) is not None]
