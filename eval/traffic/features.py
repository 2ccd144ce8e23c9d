"""Columnar features of a log, as SQL over a table `log` with the columns of schema.py.

Everything here is plain ANSI SQL (GROUP BY, self-join on a bucket, CAST, FLOOR, LEAST, LOG2, COUNT
DISTINCT): DuckDB runs it embedded on a Parquet file or a DataFrame, and Spark SQL runs the same
strings unchanged on a distributed log (register the table as `log`). Per-request detector outputs
(CoT flags, template cluster ids) join in as further tables and are aggregated the same way.
"""
from __future__ import annotations

import pandas as pd

# One row per account: volume, spread in time, prompt diversity, share on the newest model.
ACCOUNT_SQL = """
SELECT account_id,
       COUNT(*) AS n_requests,
       COUNT(DISTINCT prompt) AS n_distinct_prompts,
       MIN(timestamp) AS first_seen,
       MAX(timestamp) AS last_seen,
       COUNT(DISTINCT CAST(FLOOR(timestamp / 3600) AS BIGINT)) AS active_hours,
       AVG(CASE WHEN model = (SELECT MAX(model) FROM log) THEN 1.0 ELSE 0.0 END) AS newest_model_share
FROM log
GROUP BY account_id
"""

# Co-action: pairs of accounts active in the same time bucket, counted over buckets; the overlap
# coefficient (shared buckets / the smaller account's buckets) says how synchronized they are.
COACTION_SQL = """
WITH b AS (SELECT DISTINCT account_id, CAST(FLOOR(timestamp / {window}) AS BIGINT) AS bucket FROM log),
     nb AS (SELECT account_id, COUNT(*) AS n_buckets FROM b GROUP BY account_id),
     pairs AS (SELECT x.account_id AS a, y.account_id AS b, COUNT(*) AS co
               FROM b x JOIN b y ON x.bucket = y.bucket AND x.account_id < y.account_id
               GROUP BY x.account_id, y.account_id
               HAVING COUNT(*) >= {min_co})
SELECT pairs.a, pairs.b, pairs.co, pairs.co / LEAST(na.n_buckets, nbb.n_buckets) AS overlap
FROM pairs JOIN nb na ON pairs.a = na.account_id JOIN nb nbb ON pairs.b = nbb.account_id
"""

# Accounts sharing an attribute value (payment instrument, network) that at most {max_share}
# accounts hold: a value every customer of a big ISP shares is no evidence of coordination.
SHARED_SQL = """
WITH v AS (SELECT DISTINCT account_id, {col} AS val FROM log WHERE {col} IS NOT NULL),
     s AS (SELECT val, COUNT(*) AS n FROM v GROUP BY val HAVING COUNT(*) BETWEEN 2 AND {max_share})
SELECT x.account_id AS a, y.account_id AS b
FROM v x JOIN v y ON x.val = y.val AND x.account_id < y.account_id JOIN s ON x.val = s.val
"""

# Per account: how many of its requests a request-level flag marks (table `flags`: request_id, flag).
FLAG_COUNT_SQL = """
SELECT log.account_id, COUNT(*) AS n, SUM(flags.flag) AS k
FROM log JOIN flags ON log.request_id = flags.request_id
GROUP BY log.account_id
"""

# Template concentration: for each account, max over prompt clusters of
# k / (n + 10) x log2(accounts using the cluster), k of the account's n requests in the cluster.
TEMPLATE_SQL = """
WITH r AS (SELECT log.account_id, clusters.cluster FROM log JOIN clusters ON log.prompt = clusters.prompt),
     c AS (SELECT cluster, COUNT(DISTINCT account_id) AS n_acc FROM r GROUP BY cluster),
     a AS (SELECT account_id, cluster, COUNT(*) AS k FROM r GROUP BY account_id, cluster),
     n AS (SELECT account_id, COUNT(*) AS n FROM r GROUP BY account_id)
SELECT a.account_id, MAX(1.0 * a.k / (n.n + 10) * LOG2(c.n_acc)) AS score, MAX(c.n_acc) AS max_cluster_accounts
FROM a JOIN c ON a.cluster = c.cluster JOIN n ON a.account_id = n.account_id
GROUP BY a.account_id
"""


def query(con, sql: str, log: pd.DataFrame, **tables) -> pd.DataFrame:
    """Run `sql` on a connection with `log` (and any further DataFrames) registered by name."""
    con.register("log", log)
    for name, df in tables.items():
        con.register(name, df)
    try:
        return con.execute(sql).df()
    finally:
        for name in ("log", *tables):
            con.unregister(name)
