"""Account coordination graph: accounts linked by shared attributes and synchronized activity.

Edges (features.SHARED_SQL, features.COACTION_SQL):
- shared payment instrument (weight 1), shared network (weight 0.5), each only for values that at
  most `max_share` accounts hold (a big ISP's customers are not a ring);
- co-action: both accounts active in the same `window`-second bucket at least `min_co` times with
  overlap coefficient >= `min_overlap` (weight = overlap), the coordination-network measure of
  social-media research.
Account score: its weighted degree. Campaign groups: networkx Louvain communities (seeded) of the
graph, reported with their sizes; a community is a candidate campaign for an investigator.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..features import COACTION_SQL, SHARED_SQL, query
from ..schema import require_unlabelled

WEIGHTS = {"payment_id": 1.0, "network": 0.5}


def edges(log: pd.DataFrame, con, window: float = 60.0, min_co: int = 3, min_overlap: float = 0.3,
          max_share: int = 200) -> pd.DataFrame:
    """a, b, weight, kind: every link between two accounts (one row per link kind)."""
    require_unlabelled(log)
    parts = []
    for col, w in WEIGHTS.items():
        if col in log.columns:
            e = query(con, SHARED_SQL.format(col=col, max_share=int(max_share)), log[["account_id", col]])
            parts.append(e.assign(weight=w, kind=col))
    co = query(con, COACTION_SQL.format(window=float(window), min_co=int(min_co)), log[["account_id", "timestamp"]])
    co = co[co["overlap"] >= min_overlap]
    parts.append(pd.DataFrame({"a": co["a"], "b": co["b"], "weight": co["overlap"].astype(float), "kind": "coaction"}))
    return pd.concat(parts, ignore_index=True)


def graph(e: pd.DataFrame, accounts):
    import networkx as nx

    g = nx.Graph()
    g.add_nodes_from(accounts)
    agg = e.groupby(["a", "b"], as_index=False)["weight"].sum()
    g.add_weighted_edges_from(agg.itertuples(index=False, name=None))
    return g


def coordination_scores(log: pd.DataFrame, con, seed: int = 0, **kw) -> pd.DataFrame:
    """account_id, score (weighted degree), community, community_size; attrs['edges'] the links."""
    import networkx as nx

    e = edges(log, con, **kw)
    accounts = np.sort(log["account_id"].unique())
    g = graph(e, accounts)
    strength = dict(g.degree(weight="weight"))
    comm = nx.community.louvain_communities(g, weight="weight", seed=seed)
    cid = {a: i for i, c in enumerate(sorted(comm, key=lambda c: (-len(c), min(c)))) for a in c}
    size = {i: len(c) for i, c in enumerate(sorted(comm, key=lambda c: (-len(c), min(c))))}
    out = pd.DataFrame({"account_id": accounts, "score": [strength[a] for a in accounts],
                        "community": [cid[a] for a in accounts]})
    out["community_size"] = out["community"].map(size)
    out.attrs["edges"] = e
    return out
