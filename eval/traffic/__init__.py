"""Traffic-side detection of distillation campaigns (`antidistill traffic`).

Data flow: simulator (or a user's own log) -> Parquet -> columnar features through DuckDB (SQL that
Spark SQL runs unchanged) -> detectors (CoT-elicitation classifier, MinHash template clusters,
account coordination graph, per-account MMD window test, combined score) -> conformal p-values
from legitimate-only calibration accounts (calibrate.py) -> TPR at fixed FPR, time to detection,
evasion curves.
Ground-truth label columns (`LABEL_COLUMNS` in schema.py) never reach a detector.
"""
