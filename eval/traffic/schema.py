"""The documented log columns, their validation, and the wall between labels and detectors.

A log is one row per request:

| column | required | type | meaning |
|---|---|---|---|
| request_id | yes | string or integer | unique per request |
| account_id | yes | string | the API account (key) that sent it |
| timestamp | yes | epoch seconds (number) or ISO 8601 text | when it arrived |
| prompt | yes | text | the request's prompt |
| model | yes | string | the model id asked for |
| payment_id, network, signup_route, region | no | string | account metadata (empty = unknown) |
| proxy | no | string | the provider's own proxy / VPN flag for the network (recorded; no detector scores it) |

`campaign_id` and `archetype` are the simulator's ground truth (LABEL_COLUMNS): `strip_labels`
removes them, and every detector calls `require_unlabelled` first, so no detector can read them.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from antidistill.watermark.errors import UserError

REQUIRED = ("request_id", "account_id", "timestamp", "prompt", "model")
OPTIONAL = ("payment_id", "network", "signup_route", "region", "proxy")
LABEL_COLUMNS = ("campaign_id", "archetype")


def validate(df: pd.DataFrame, where: str = "log") -> pd.DataFrame:
    """The canonical log: required columns checked, timestamp as float epoch seconds, strings as str.

    Every problem is one UserError line naming the column (and the first bad row)."""
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise UserError(f"{where}: missing column {missing[0]!r} (required: {', '.join(REQUIRED)}; "
                        f"found: {', '.join(map(str, df.columns)) or 'none'})")
    if len(df) == 0:
        raise UserError(f"{where}: no rows")
    out = pd.DataFrame(index=pd.RangeIndex(len(df)))
    for col in ("request_id", "account_id", "prompt", "model"):
        values = df[col].reset_index(drop=True)
        bad = values.isna() | (values.astype(str).str.len() == 0)
        if bad.any():
            raise UserError(f"{where}: column {col!r} is empty at row {int(np.argmax(bad.to_numpy())) + 1}")
        out[col] = values.astype(str)
    out["timestamp"] = _seconds(df["timestamp"].reset_index(drop=True), where)
    if out["request_id"].duplicated().any():
        dup = int(np.argmax(out["request_id"].duplicated().to_numpy()))
        raise UserError(f"{where}: column 'request_id' repeats {out['request_id'][dup]!r} at row {dup + 1}")
    for col in OPTIONAL:
        if col in df.columns:
            out[col] = df[col].reset_index(drop=True).astype("string").replace("", pd.NA)
    for col in LABEL_COLUMNS:
        if col in df.columns:
            out[col] = df[col].reset_index(drop=True)
    return out


def _seconds(values: pd.Series, where: str) -> np.ndarray:
    """Epoch seconds from numbers or ISO 8601 text; one line naming the first bad row."""
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().all():
        secs = numeric.to_numpy(dtype=float)
    elif pd.api.types.is_datetime64_any_dtype(values):
        secs = _epoch(pd.to_datetime(values, utc=True))
    else:
        parsed = pd.to_datetime(values.astype("string"), utc=True, errors="coerce", format="ISO8601")
        if parsed.isna().any():
            i = int(np.argmax(parsed.isna().to_numpy()))
            raise UserError(f"{where}: column 'timestamp' at row {i + 1} is {values[i]!r}, not epoch seconds "
                            f"or ISO 8601 time")
        secs = _epoch(parsed)
    if not np.isfinite(secs).all():
        i = int(np.argmax(~np.isfinite(secs)))
        raise UserError(f"{where}: column 'timestamp' at row {i + 1} is {values[i]!r}, not a finite time")
    return secs


def _epoch(ts: pd.Series) -> np.ndarray:
    return (ts - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(dtype=float)


def strip_labels(df: pd.DataFrame) -> pd.DataFrame:
    """The log as a detector may see it: the ground-truth columns removed."""
    return df.drop(columns=[c for c in LABEL_COLUMNS if c in df.columns])


def require_unlabelled(df: pd.DataFrame) -> None:
    """Refuse a log that still carries ground truth: detectors must never read it."""
    present = [c for c in LABEL_COLUMNS if c in df.columns]
    if present:
        raise ValueError(f"detectors take logs without label columns; drop {', '.join(present)} "
                         f"(schema.strip_labels)")
