"""Template clusters: near-duplicate prompts across accounts (MinHash LSH, exact Jaccard check).

Prompts are sets of word 3-shingles, every number written as 0 (a template's slots are numbers as
often as not; chosen on a seed-0 development simulation, as were the threshold 0.5 and the score). Signatures are datasketch's legacy MinHash (scheme
"legacy": the same permutations and formula as `MinHash(..., hashfunc=crc32).update_batch`, a test checks
it), computed for all prompts at once with numpy. Clustering is one pass of leader clustering: each
distinct prompt asks a `datasketch.MinHashLSH` of cluster leaders for candidates, joins (union-find)
every candidate whose exact Jaccard similarity is >= threshold, or becomes a leader itself. Only leaders
enter the index, so a template with thousands of variants costs one LSH entry, not n^2 pairs.

Account score (features.TEMPLATE_SQL): max over clusters of k / (n + 10) x log2(accounts using the
cluster), k of the account's n requests in the cluster: a fleet pushing one template scores high; a
user asking a popular question once does not (the pseudo-count 10 shrinks the share of accounts with
few requests; chosen on a development simulation, seed 0, never on a reported one).
"""
from __future__ import annotations

import re
import zlib

import numpy as np
import pandas as pd

from ..features import TEMPLATE_SQL, query
from ..memo import PromptMemo
from ..schema import require_unlabelled

NUM_PERM, SEED, SHINGLE = 64, 1, 3
_WORD, _DIGITS = re.compile(r"\w+"), re.compile(r"\d+")
_PRIME, _MAX = np.uint64((1 << 61) - 1), np.uint64((1 << 32) - 1)


def shingles(prompt: str) -> set[bytes]:
    words = _WORD.findall(_DIGITS.sub("0", prompt.lower()))
    if len(words) < SHINGLE:
        return {" ".join(words).encode()}
    return {" ".join(words[i:i + SHINGLE]).encode() for i in range(len(words) - SHINGLE + 1)}


def signatures(sets: list[set[bytes]]) -> np.ndarray:
    """(n, NUM_PERM) uint64 MinHash signatures, equal to datasketch's with hashfunc=crc32."""
    from datasketch import MinHash

    a, b = (x.astype(np.uint64) for x in MinHash(num_perm=NUM_PERM, seed=SEED, scheme="legacy").permutations)
    sizes = np.array([len(s) for s in sets])
    hv = np.fromiter((zlib.crc32(x) for s in sets for x in s), dtype=np.uint64, count=int(sizes.sum()))
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    phv = np.concatenate([((hv[lo:lo + (1 << 18), None] * a + b) % _PRIME) & _MAX  # chunks: small blocks
                          for lo in range(0, len(hv), 1 << 18)]) if len(hv) else np.empty((0, NUM_PERM), np.uint64)
    return np.minimum.reduceat(phv, starts, axis=0)


_SIGNATURES = PromptMemo(lambda ps: signatures([shingles(p) for p in ps]))


def cluster_prompts(prompts: list[str], threshold: float = 0.5) -> np.ndarray:
    """Cluster id per prompt (distinct prompts, in the given order), by LSH leader clustering."""
    from datasketch import LeanMinHash, MinHashLSH

    sets = [shingles(p) for p in prompts]
    sigs = _SIGNATURES(prompts)
    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    parent = np.arange(len(prompts))  # union-find over leaders: a prompt close to two clusters joins them

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, (s, sig) in enumerate(zip(sets, sigs)):
        m = LeanMinHash(seed=SEED, hashvalues=sig, scheme="legacy")
        hits, tried = [], set()  # one confirmed leader per cluster is enough
        for j in lsh.query(m):
            rj = root(j)
            if rj not in tried and len(s & sets[j]) / len(s | sets[j]) >= threshold:
                tried.add(rj)
                hits.append(rj)
        if not hits:
            lsh.insert(i, m)
            continue
        parent[i] = hits[0]
        for r in hits[1:]:
            parent[root(r)] = hits[0]
    cluster = np.array([root(i) for i in range(len(prompts))])
    return cluster


def template_scores(log: pd.DataFrame, con, threshold: float = 0.5) -> pd.DataFrame:
    """account_id, score, max_cluster_accounts; plus the clusters (prompt -> cluster id) used."""
    require_unlabelled(log)
    distinct = sorted(log["prompt"].unique())  # a fixed order: the clustering depends on it
    clusters = pd.DataFrame({"prompt": distinct, "cluster": cluster_prompts(distinct, threshold)})
    out = query(con, TEMPLATE_SQL, log[["account_id", "prompt"]], clusters=clusters)
    out.attrs["clusters"] = clusters
    return out
