"""Logs on disk: Parquet written atomically with pyarrow, read and queried through DuckDB.

DuckDB reads Parquet, CSV and JSONL alike and streams them, so a real log of any size is queried the
same way as a simulated one. Connections run on one thread (the per-core figures of the benchmark).
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from antidistill.watermark.errors import UserError, atomic_write

from .schema import validate

READERS = {".parquet": "read_parquet(?)", ".csv": "read_csv(?, all_varchar = true, header = true)",
           ".jsonl": "read_json(?, format = 'newline_delimited')",
           ".json": "read_json(?, format = 'newline_delimited')"}


def connect(threads: int = 1):
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET threads = {int(threads)}")
    return con


def write_log(df: pd.DataFrame, path: str | Path) -> Path:
    """df as a Parquet file (zstd), replacing `path` only once it is complete."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    table = pa.Table.from_pandas(df, preserve_index=False)
    with atomic_write(path, "wb") as fh:
        pq.write_table(table, fh, compression="zstd")
    return path


def read_log(path: str | Path) -> pd.DataFrame:
    """A user's or the simulator's log (Parquet, CSV or JSONL), validated (schema.validate)."""
    import duckdb

    path = Path(path)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise UserError(f"log {path}: unknown format {path.suffix or '(no suffix)'!r}; use .parquet, .csv or .jsonl")
    if not path.is_file():
        raise UserError(f"log {path} does not exist or is not a file")
    con = connect()
    try:
        df = con.execute(f"SELECT * FROM {reader}", [str(path)]).df()
        # A JSONL column whose rows disagree in type ("1" and 1) comes back as JSON text ('"1"', '1'):
        # decode it, so that schema.validate sees the values the user wrote (and compares them as text).
        for name, kind, *_ in con.description:
            if str(kind) == "JSON":
                df[name] = df[name].map(lambda v: json.loads(v) if isinstance(v, str) else v)
    except duckdb.Error as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"log {path}: cannot be read ({first})") from None
    finally:
        con.close()
    return validate(df, where=f"log {path}")
