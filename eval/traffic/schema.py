"""The documented log columns, their validation, and the wall between labels and detectors.

A log is one row per request:

| column | required | type | meaning |
|---|---|---|---|
| request_id | yes | string or integer | unique per request |
| account_id | yes | string | the API account (key) that sent it |
| timestamp | yes | epoch seconds (number) or ISO 8601 text with a zone | when it arrived |
| prompt | yes | text | the request's prompt |
| model | yes | string | the model id asked for |
| payment_id, network, signup_route, region | no | string | account metadata (empty = unknown) |
| proxy | no | string | the provider's own proxy / VPN flag for the network (recorded; no detector scores it) |

`campaign_id` and `archetype` are the simulator's ground truth (LABEL_COLUMNS): `strip_labels`
removes them, and every detector calls `require_unlabelled` first, so no detector can read them.

Timestamp rules (each violation is one line naming the first bad row and its value):
- numbers are epoch seconds; ISO 8601 text may mix with them row by row;
- every time must lie in [2000-01-01, 2100-01-01) UTC: earlier or later is refused, and a number that
  would fall in that range once divided by 10^3, 10^6 or 10^9 is named as epoch milli-, micro- or
  nanoseconds (refused, not converted: a log mixing units cannot be guessed right);
- ISO text without a zone (no `Z` or `+HH:MM`) is read as UTC, with one warning per log.
Text columns (ids, prompt, model, metadata) refuse true/false values and lists; ids that mix numbers
and strings (`1` and `"1"` in JSONL) are compared as text, so such a repeat is caught as a duplicate.
"""
from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd

from antidistill.watermark.errors import UserError

REQUIRED = ("request_id", "account_id", "timestamp", "prompt", "model")
OPTIONAL = ("payment_id", "network", "signup_route", "region", "proxy")
LABEL_COLUMNS = ("campaign_id", "archetype")
T_MIN, T_MAX = 946_684_800.0, 4_102_444_800.0  # 2000-01-01 and 2100-01-01 UTC, epoch seconds
_ZONE = re.compile(r"(?:Z|[+-]\d{2}(?::?\d{2})?)$", re.IGNORECASE)
_TIME = re.compile(r"\d[T ]\d")


def _text(values: pd.Series, col: str, where: str) -> pd.Series:
    """A column of text: numbers become their text (1 -> "1", like "1"), true/false and lists are refused."""
    if pd.api.types.is_bool_dtype(values):
        raise UserError(f"{where}: column {col!r} holds true/false values at row 1 ({_show(values.iloc[0])}); "
                        f"expected text")
    if values.dtype == object:
        kind = values.map(lambda v: "bool" if isinstance(v, (bool, np.bool_)) else
                          "list" if isinstance(v, (list, tuple, dict, np.ndarray)) else "")
        bad = (kind != "").to_numpy()
        if bad.any():
            i = int(np.argmax(bad))
            what = "a true/false value" if kind.iloc[i] == "bool" else "a list or object"
            raise UserError(f"{where}: column {col!r} at row {i + 1} is {what} ({_show(values.iloc[i])}); expected text")
        # integral floats (a JSON 1.0, or a numeric column with gaps) read as integers: 1.0 -> "1"
        values = values.map(lambda v: str(int(v)) if isinstance(v, float) and v.is_integer() else v)
    elif pd.api.types.is_float_dtype(values):
        values = values.map(lambda v: str(int(v)) if np.isfinite(v) and float(v).is_integer() else v)
    return values


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
        values = _text(df[col].reset_index(drop=True), col, where)
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
            values = df[col].reset_index(drop=True)
            if col != "proxy":
                values = _text(values, col, where)
            out[col] = values.astype("string").replace("", pd.NA)
    for col in LABEL_COLUMNS:
        if col in df.columns:
            out[col] = df[col].reset_index(drop=True)
    return out


def _seconds(values: pd.Series, where: str) -> np.ndarray:
    """Epoch seconds from numbers or ISO 8601 text, row by row; one line naming the first bad row."""
    if pd.api.types.is_datetime64_any_dtype(values):
        tz = getattr(values.dt, "tz", None)
        if tz is None:
            warnings.warn(f"{where}: column 'timestamp' has times without a time zone; read as UTC")
        secs = _epoch(pd.to_datetime(values, utc=True))
    else:
        if pd.api.types.is_bool_dtype(values):
            raise UserError(f"{where}: column 'timestamp' holds true/false values; expected epoch seconds or "
                            f"ISO 8601 time")
        numeric = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, copy=True)
        secs = numeric.copy()
        text = np.isnan(numeric)
        if values.dtype == object:  # true/false or lists among the values are not times
            odd = values.map(lambda v: isinstance(v, (bool, np.bool_, list, tuple, dict, np.ndarray))).to_numpy()
            numeric[odd], secs[odd], text[odd] = np.nan, np.nan, False
        if text.any():
            raw = values[text].astype("string").str.strip()
            parsed = pd.to_datetime(raw, utc=True, errors="coerce", format="ISO8601")
            secs[text] = _epoch(parsed)
            naive = raw.str.contains(_TIME, na=False) & ~raw.str.contains(_ZONE, na=False)
            naive |= raw.str.fullmatch(r"\d{4}-\d{2}-\d{2}", na=False)
            if (naive & parsed.notna()).any():
                warnings.warn(f"{where}: column 'timestamp' has ISO times without a time zone (first at row "
                              f"{int(np.flatnonzero(text)[np.argmax(naive.to_numpy())]) + 1}); read as UTC")
    bad = ~np.isfinite(secs)
    if bad.any():
        i = int(np.argmax(bad))
        raise UserError(f"{where}: column 'timestamp' at row {i + 1} is {_show(values.iloc[i])}, not epoch seconds "
                        f"or an ISO 8601 time with a valid zone")
    out = (secs < T_MIN) | (secs >= T_MAX)
    if out.any():
        i = int(np.argmax(out))
        v = secs[i]
        unit = next(((u, f) for u, f in (("milliseconds", 1e3), ("microseconds", 1e6), ("nanoseconds", 1e9))
                     if T_MIN <= v / f < T_MAX), None)
        hint = (f"it looks like epoch {unit[0]}; give epoch seconds (divide by {unit[1]:g})" if unit
                else "times must lie between 2000-01-01 and 2100-01-01 UTC")
        raise UserError(f"{where}: column 'timestamp' at row {i + 1} is {_show(values.iloc[i])}; {hint}")
    return secs


def _show(v) -> str:
    """A cell as the user wrote it: 1767225600000, 'PST', nan (no numpy repr)."""
    if isinstance(v, (np.floating, np.integer, np.bool_)):
        v = v.item()
    if isinstance(v, np.ndarray):
        v = v.tolist()
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e18:
        return str(int(v))
    return repr(v) if isinstance(v, str) else str(v)


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
