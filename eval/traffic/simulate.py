"""Seeded, vectorised API-traffic simulator: legitimate users and distillation campaigns.

Every column is built with numpy / pyarrow compute over whole arrays (no Python loop per request),
so 10^6 requests from 10^4 accounts take seconds. `simulate(cfg)` returns one DataFrame in the
schema of schema.py plus the ground truth `campaign_id` (-1 = legitimate) and `archetype`.

Legitimate archetypes (the hard cases included on purpose):
- casual: a few to a few hundred diverse requests in sessions, diurnal in the account's time zone;
  some ask for step-by-step explanations in their own words; some sit behind shared commercial VPNs
  or share a household network;
- heavy: hundreds of requests on one topic or one task skill;
- classroom: a class of accounts on one school network, the same homework prompts, in class hours;
- integrator: an automated API client, one fixed prompt template around the clock, no reasoning asked;
  integrators share a handful of cloud networks and templates.
Campaigns (hydra clusters): accounts behind a few proxy networks and payment instruments, one narrow
capability's template with paraphrase variation inside a CoT-elicitation wrapper, requests load-
balanced across the fleet in synchronized waves, benign cover traffic, banned accounts replaced by
fresh ones, and a pivot of a share of traffic to a newly released model within 24 hours.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields

import numpy as np
import pandas as pd

from antidistill.watermark.errors import UserError

from . import prompts as P

DAY = 86400.0
EPOCH0 = 1_767_225_600.0  # 2026-01-01 00:00 UTC: logs carry real-looking epoch seconds
REGIONS = ("us", "eu", "in", "br", "jp")
TZ_HOURS = np.array([-6, 1, 5.5, -3, 9])
ARCHETYPES = ("casual", "heavy", "classroom", "integrator")
MODELS = ("model-a", "model-b")  # model-b is released at pivot_day


@dataclass
class SimConfig:
    seed: int = 0
    prefix: str = "e"  # account ids are PREFIX + number: disjoint logs get disjoint prefixes
    days: float = 7.0
    n_legit: int = 3000  # legitimate accounts
    heavy_share: float = 0.03
    classroom_share: float = 0.05
    integrator_share: float = 0.02
    class_size: int = 25
    vpn_share: float = 0.03  # casual users behind one of a few commercial VPN networks
    step_share: float = 0.06  # legitimate prompts that ask for steps in ordinary words
    n_campaigns: int = 6
    accounts_per_campaign: int = 40
    requests_per_account: int = 150
    paraphrase_rate: float = 0.3
    jitter_s: float = 20.0  # spread of a wave's request times (seconds)
    cover_share: float = 0.1  # benign prompts mixed into campaign traffic
    ban_rate: float = 0.3  # campaign accounts banned mid-run and replaced by a fresh account
    wrappers: str = "heldout"  # wrapper families the campaigns use: heldout or train
    pivot_day: float = 4.0
    pivot_share: float = 0.5  # campaign traffic moved to the new model within 24 h of its release

    # Upper bounds, so that a typo is one line instead of a terabyte allocation or an endless loop
    # (the benchmark's 10^6-request log is 3e4 accounts; these leave two orders of magnitude above it).
    LIMITS = {"n_legit": 2_000_000, "n_campaigns": 1_000, "accounts_per_campaign": 100_000,
              "requests_per_account": 100_000, "class_size": 10_000, "days": 366.0}
    MAX_CAMPAIGN_REQUESTS = 50_000_000

    def check(self) -> "SimConfig":
        for name, hi in self.LIMITS.items():
            v = getattr(self, name)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v > hi:
                raise UserError(f"simulation setting {name} must lie in 0 <= x <= {hi:,}, got {v!r}")
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in ("prefix", "wrappers"):
                continue
            if not (isinstance(v, (int, float)) and np.isfinite(v) and v >= 0):
                raise UserError(f"simulation setting {f.name} must be a finite number >= 0, got {v!r}")
        for name in ("heavy_share", "classroom_share", "integrator_share", "vpn_share", "step_share",
                     "paraphrase_rate", "cover_share", "ban_rate", "pivot_share"):
            if getattr(self, name) > 1:
                raise UserError(f"simulation setting {name} must lie in 0 <= x <= 1, got {getattr(self, name)!r}")
        if self.heavy_share + self.classroom_share + self.integrator_share > 1:
            raise UserError("simulation settings heavy_share + classroom_share + integrator_share must be <= 1")
        if self.wrappers not in ("heldout", "train"):
            raise UserError(f"simulation setting wrappers must be heldout or train, got {self.wrappers!r}")
        if not re.fullmatch(r"[a-z]{1,8}", self.prefix):
            raise UserError(f"simulation setting prefix must be 1-8 lowercase letters, got {self.prefix!r}")
        if self.days <= 0 or self.n_legit + self.n_campaigns == 0 or self.class_size < 2:
            raise UserError("simulation needs days > 0, some accounts, and class_size >= 2")
        if self.n_campaigns and (self.accounts_per_campaign < 1 or self.requests_per_account < 1):
            raise UserError("campaigns need accounts_per_campaign >= 1 and requests_per_account >= 1")
        total = self.n_campaigns * self.accounts_per_campaign * self.requests_per_account
        if total > self.MAX_CAMPAIGN_REQUESTS:
            raise UserError(f"simulation of {total:,} campaign requests (n_campaigns x accounts_per_campaign x "
                            f"requests_per_account) is above the limit of {self.MAX_CAMPAIGN_REQUESTS:,}")
        if self.pivot_day > self.days:
            raise UserError(f"simulation setting pivot_day ({self.pivot_day:g}) must lie within the log's "
                            f"days (0 <= x <= {self.days:g})")
        if not 0 <= self.seed < 2**32:
            raise UserError(f"simulation seed must be an integer with 0 <= x <= {2**32 - 1}, got {self.seed!r}")
        return self

    def as_dict(self) -> dict:
        return asdict(self)


def _join(*cols) -> np.ndarray:
    """Element-wise string concatenation of equal-length arrays, in C (pyarrow compute)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arrays = [pa.scalar(c, type=pa.string()) if isinstance(c, str) else pa.array(c, type=pa.string()) for c in cols]
    return np.asarray(pc.binary_join_element_wise(*arrays, "").to_numpy(zero_copy_only=False), dtype=object)


def _ragged_pick(groups: list[list[str]], g: np.ndarray, rng) -> np.ndarray:
    """For each request, a uniform member of group g[i] (groups concatenated, picked by offset)."""
    flat = np.array([x for grp in groups for x in grp], dtype=object)
    sizes = np.array([len(grp) for grp in groups])
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return flat[offsets[g] + (rng.random(len(g)) * sizes[g]).astype(np.int64)]


def _rank_within(owner: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... within each run of equal values of a sorted owner array."""
    starts = np.r_[0, np.flatnonzero(np.diff(owner)) + 1]
    counts = np.diff(np.r_[starts, len(owner)])
    return np.arange(len(owner)) - np.repeat(starts, counts)


class _Builder:
    def __init__(self, cfg: SimConfig):
        self.cfg, self.rng = cfg, np.random.default_rng(cfg.seed)
        self.cores, self.topics = P.legit_cores(cfg.seed)
        self.acc: dict[str, list] = {k: [] for k in ("archetype", "campaign", "payment", "network", "signup",
                                                     "region", "proxy")}

    def add_accounts(self, n, archetype, campaign, payment, network, signup, region, proxy):
        for k, v in zip(self.acc, (archetype, campaign, payment, network, signup, region, proxy)):
            self.acc[k].append(np.broadcast_to(np.asarray(v, dtype=object), (n,)).copy())
        return sum(len(a) for a in self.acc["archetype"]) - n  # index of the first new account

    # ------------------------------------------------------------ legitimate text
    def legit_prompts(self, n: int) -> np.ndarray:
        r = self.rng
        core = np.array(self.cores, dtype=object)[r.integers(len(self.cores), size=n)]
        step = r.random(n) < self.cfg.step_share
        closer = np.where(step, np.array(P.STEP_CLOSERS, dtype=object)[r.integers(len(P.STEP_CLOSERS), size=n)],
                          np.array(P.CLOSERS, dtype=object)[r.integers(len(P.CLOSERS), size=n)])
        opener = np.array(P.OPENERS, dtype=object)[r.integers(len(P.OPENERS), size=n)]
        return _join(opener, core, closer)

    def focused_prompts(self, focus: np.ndarray) -> np.ndarray:
        """Heavy users: cores about one topic (or one task skill) each."""
        groups = [[c for c in self.cores if t in c] for t in self.topics]
        from antidistill.students.tasks.suite import SKILLS, make_split

        for skill in SKILLS:
            groups.append([e.prompt.strip() for e in make_split("train", 200, seed=self.cfg.seed, skills=[skill])])
        core = _ragged_pick(groups, focus % len(groups), self.rng)
        closer = np.array(P.CLOSERS, dtype=object)[self.rng.integers(len(P.CLOSERS), size=len(focus))]
        return _join(core, closer)

    # ------------------------------------------------------------ timing
    def session_times(self, acc: np.ndarray, tz: np.ndarray) -> np.ndarray:
        """Sessions of ~4 requests ~90 s apart, started at diurnal local hours (acc sorted)."""
        r, n = self.rng, len(acc)
        rank = _rank_within(acc)
        per_session = 1 + r.poisson(3, size=acc.max() + 1 if n else 0)
        session = rank // per_session[acc]
        key = acc.astype(np.int64) * 100_000 + session
        first = np.r_[True, key[1:] != key[:-1]]
        sid = np.cumsum(first) - 1
        n_sess = int(sid[-1]) + 1 if n else 0
        day = r.integers(0, int(np.ceil(self.cfg.days)), size=n_sess)
        hour = np.clip(r.normal(14, 4, size=n_sess), 0, 24)  # local afternoon peak
        start = day * DAY + (hour - tz[first]) * 3600.0
        gaps = r.exponential(90.0, size=n)
        gaps[first] = 0.0
        csum = np.cumsum(gaps)
        t = start[sid] + csum - csum[first][sid]
        return np.mod(t, self.cfg.days * DAY)

    # ------------------------------------------------------------ archetypes
    def legit(self) -> dict:
        c, r = self.cfg, self.rng
        n_heavy, n_int = int(round(c.n_legit * c.heavy_share)), int(round(c.n_legit * c.integrator_share))
        n_class = int(round(c.n_legit * c.classroom_share / c.class_size)) * c.class_size
        n_cas = max(c.n_legit - n_heavy - n_int - n_class, 0)
        kinds = np.repeat(np.arange(4), [n_cas, n_heavy, n_class, n_int])
        n = len(kinds)
        region = r.integers(len(REGIONS), size=n)
        cls = np.full(n, -1)
        cls[kinds == 2] = np.arange(n_class) // c.class_size
        n_classes = n_class // c.class_size
        region[kinds == 2] = r.integers(len(REGIONS), size=max(n_classes, 1))[cls[kinds == 2]]
        pay_kind = r.random(n)
        payment = np.where(pay_kind < 0.3, None, np.char.add(f"pay-{c.prefix}", np.arange(n).astype(str))).astype(object)
        network = np.char.add(f"res-{c.prefix}", np.arange(n).astype(str)).astype(object)
        household = (kinds == 0) & (r.random(n) < 0.05)
        network[household] = np.roll(network, 1)[household]  # shares the previous account's home network
        vpn = (kinds < 2) & (r.random(n) < c.vpn_share)
        network[vpn] = np.char.add("vpn-", r.integers(10, size=vpn.sum()).astype(str))
        network[kinds == 2] = np.char.add(f"school-{c.prefix}", cls[kinds == 2].astype(str))
        network[kinds == 3] = np.char.add("cloud-", r.integers(20, size=n_int).astype(str))
        signup = np.array(["web", "mobile", "edu", "api"], dtype=object)[np.where(kinds >= 2, kinds, r.integers(2, size=n))]
        first = self.add_accounts(n, np.array(ARCHETYPES, dtype=object)[kinds], -1, payment, network, signup,
                                  np.array(REGIONS, dtype=object)[region], vpn)
        # requests per account
        n_req = np.where(kinds == 0, np.minimum(1 + r.lognormal(2.3, 1.0, n).astype(int), 300),
                         np.where(kinds == 1, r.integers(150, 400, n),
                                  np.where(kinds == 2, r.integers(10, 30, n), r.integers(100, 400, n))))
        acc = np.repeat(np.arange(n), n_req)
        kind = kinds[acc]
        tz = TZ_HOURS[region][acc]
        t = self.session_times(acc, tz)
        prompt = self.legit_prompts(len(acc))
        heavy = kind == 1
        prompt[heavy] = self.focused_prompts(r.integers(10**6, size=n)[acc[heavy]])
        # classroom: homework on the class topic in the class's weekly lessons (45 minutes, local 9-15 h)
        room = kind == 2
        if room.any():
            lessons_day = r.integers(0, int(np.ceil(c.days)), size=(n_classes, 3))
            lessons_hour = r.integers(9, 15, size=(n_classes, 3))
            k = cls[acc[room]]
            lesson = r.integers(3, size=room.sum())
            t[room] = np.mod(lessons_day[k, lesson] * DAY + (lessons_hour[k, lesson] - tz[room]) * 3600
                             + r.uniform(0, 2700, room.sum()), c.days * DAY)
            topic = np.array(self.topics, dtype=object)[r.integers(len(self.topics), size=max(n_classes, 1))][k]
            hw = np.array(P.HOMEWORK, dtype=object)[r.integers(len(P.HOMEWORK), size=room.sum())]
            pre, post = zip(*(h.split("{a}") for h in hw))
            opener = np.array(P.OPENERS, dtype=object)[r.integers(len(P.OPENERS), size=room.sum())]
            prompt[room] = _join(opener, np.array(pre, dtype=object), topic, np.array(post, dtype=object))
        # integrators: one template each, around the clock
        bot = kind == 3
        if bot.any():
            tpl = r.integers(len(P.INTEGRATOR_TEMPLATES), size=n)[acc[bot]]
            pre, post = zip(*(P.INTEGRATOR_TEMPLATES[j].split("{doc}") for j in range(len(P.INTEGRATOR_TEMPLATES))))
            doc = np.array(P.DOCS, dtype=object)[r.integers(len(P.DOCS), size=bot.sum())]
            ref = np.char.add(" (ref ", r.integers(10**5, size=bot.sum()).astype(str)).astype(object)
            prompt[bot] = _join(np.array(pre, dtype=object)[tpl], doc, np.array(post, dtype=object)[tpl], ref, ")")
            t[bot] = r.uniform(0, c.days * DAY, bot.sum())
        # the new model: legitimate adoption grows slowly after its release
        since = (t - c.pivot_day * DAY) / DAY
        model = np.where((since > 0) & (r.random(len(t)) < np.clip(0.05 + 0.1 * since, 0, 0.5)), 1, 0)
        return dict(acc=acc + first, t=t, prompt=prompt, model=model)

    def campaign(self, cid: int) -> dict:
        c, r = self.cfg, self.rng
        A, R = c.accounts_per_campaign, c.accounts_per_campaign * c.requests_per_account
        cap = list(P.CAMPAIGN_TEMPLATES)[cid % len(P.CAMPAIGN_TEMPLATES)]
        pays = np.char.add(f"pay-{c.prefix}c{cid}-", np.arange(max(2, A // 10)).astype(str)).astype(object)
        nets = np.char.add(f"proxy-{c.prefix}c{cid}-", np.arange(max(2, A // 8)).astype(str)).astype(object)
        n_slots = A

        def fleet(k):
            return self.add_accounts(k, "campaign", cid, pays[r.integers(len(pays), size=k)],
                                     nets[r.integers(len(nets), size=k)],
                                     np.array(["web", "mobile"], dtype=object)[r.integers(2, size=k)],
                                     np.array(REGIONS, dtype=object)[r.integers(len(REGIONS), size=k)],
                                     r.random(k) < 0.7)

        first = fleet(n_slots)
        start = r.uniform(0, 0.3) * c.days * DAY
        # load balancing: request j of the campaign goes to slot j % A in wave j // A (one request per
        # account per wave), some shifted to a random other wave; waves spread over the active period
        j = np.arange(R)
        slot, wave = j % A, j // A
        n_waves = int(wave.max()) + 1
        moved = r.random(R) < 0.2
        wave[moved] = r.integers(n_waves, size=moved.sum())
        wave_t = start + np.sort(r.uniform(0, c.days * DAY - start, n_waves))
        t = wave_t[wave] + np.abs(r.normal(0, max(c.jitter_s, 1e-9), R))
        t = np.minimum(t, c.days * DAY - 1)
        # banned accounts: after a ban time the slot's traffic comes from a fresh account
        banned = r.random(n_slots) < c.ban_rate
        ban_t = np.where(banned, r.uniform(start, c.days * DAY, n_slots), np.inf)
        repl = fleet(int(banned.sum())) + np.cumsum(banned) - 1 if banned.any() else np.zeros(n_slots, int)
        acc = np.where(t >= ban_t[slot], repl[slot], first + slot)
        # text: paraphrased template with slots, inside a CoT-elicitation wrapper; cover traffic is benign
        variants = P.expand_variants(P.CAMPAIGN_TEMPLATES[cap], c.paraphrase_rate, 400, r)
        order = ["s", "n"] if variants[0].index("{s}") < variants[0].index("{n}") else ["n", "s"]
        segs = np.array([re.split(r"\{[sn]\}", v) for v in variants], dtype=object)
        v = r.integers(len(variants), size=R)
        from antidistill.students.tasks.suite import make_split

        problems = np.array([e.prompt.strip() for e in make_split("distill", 400, seed=c.seed + cid)], dtype=object)
        slots = {"s": problems[r.integers(len(problems), size=R)],
                 "n": r.integers(5, 1000, size=R).astype(str).astype(object)}
        body = _join(segs[v, 0], slots[order[0]], segs[v, 1], slots[order[1]], segs[v, 2])
        fams = P.HELDOUT_FAMILIES if c.wrappers == "heldout" else P.TRAIN_FAMILIES
        own = [P.WRAPPER_FAMILIES[f] for f in fams]
        wraps = own[cid % len(own)] + own[(cid + 1) % len(own)]  # two families per campaign
        w = np.array([x.split("{p}") for x in wraps], dtype=object)[r.integers(len(wraps), size=R)]
        prompt = _join(w[:, 0], body, w[:, 1])
        cover = r.random(R) < c.cover_share
        prompt[cover] = self.legit_prompts(int(cover.sum()))
        # pivot: within 24 h of the release, a share of the campaign's traffic moves to the new model
        switch = c.pivot_day * DAY + r.uniform(0, DAY)
        model = ((t > switch) & (r.random(R) < c.pivot_share)).astype(int)
        return dict(acc=acc, t=t, prompt=prompt, model=model)


def simulate(cfg: SimConfig) -> pd.DataFrame:
    """The log of cfg, time-ordered, with ground truth; deterministic in cfg (seed included)."""
    cfg.check()
    b = _Builder(cfg)
    parts = [b.legit()] if cfg.n_legit else []
    parts += [b.campaign(k) for k in range(cfg.n_campaigns)]
    cols = {k: np.concatenate([p[k] for p in parts]) for k in ("acc", "t", "prompt", "model")}
    acc_tab = {k: np.concatenate(v) for k, v in b.acc.items()}
    order = np.argsort(cols["t"], kind="stable")
    a = cols["acc"][order]
    ids = np.char.add(cfg.prefix, np.char.zfill(np.arange(len(acc_tab["archetype"])).astype(str), 6)).astype(object)
    return pd.DataFrame({
        "request_id": np.char.add(f"{cfg.prefix}r", np.arange(len(order)).astype(str)).astype(object),
        "account_id": ids[a],
        "timestamp": EPOCH0 + np.round(cols["t"][order], 3),
        "prompt": cols["prompt"][order],
        "model": np.array(MODELS, dtype=object)[cols["model"][order]],
        "payment_id": acc_tab["payment"][a], "network": acc_tab["network"][a],
        "signup_route": acc_tab["signup"][a], "region": acc_tab["region"][a],
        "proxy": acc_tab["proxy"][a].astype(bool),
        "campaign_id": acc_tab["campaign"][a].astype(np.int64),
        "archetype": acc_tab["archetype"][a],
    })
