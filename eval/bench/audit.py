"""Null-audit benchmark: how often does an audit convict a model that never saw the key?

    python -m antidistill.eval.bench.audit [--keys 100] [--quick] [--out results/bench]

Setting (self-contained, no download, a few minutes on 2 CPU cores): the "teacher" is a small
randomly initialised Llama whose next-token distributions have real entropy. For each of N keys
it writes a short protected corpus. Three clean suspects, none ever trained on protected outputs:
`teacher` (the same model without protection: it predicts the protected text as well as the
teacher itself), `copier` (the teacher plus in-context induction: after a token it predicts
whatever followed that token's previous occurrence in the text, as trained LMs learn to do) and
`avoider` (the opposite: where its choice was already written after this token in the text, it
predicts its second choice, so every prediction it makes there is a tuple the text did not write:
the case the unseen-tuple rule scores and the one that would expose a flaw in its argument).
Audits:

- reading mode, right key (the auditor's real situation), per scheme and suspect, N keys, seven
  variants: `default` (top-1 predictions, the audit's own rule: fresh windows for h >= 1, unseen
  tuples for h = 0), `contrast` (the same rule on the suspect's contrast choices against the
  unprotected teacher, as `antidistill run` audits), `fresh-window` (exact), `unseen-tuple`
  (valid by a monotonicity argument, conservative), `own-tuples` (instead drop predictions equal
  to any of the text's own tuples), `all-positions` (score every prediction) and `dedup-off`;
- generation mode: the suspect decodes once; its outputs are scored with N fresh keys, dedup on
  and off: greedy (as `antidistill run` audits), at normal temperature and at a low temperature.

Reported: empirical FPR at alpha = 0.01 with its exact 95% (Clopper-Pearson) interval and a KS test
of the p-values for uniformity. Valid variants must have FPR <= alpha within the interval.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats as sps
from transformers import LlamaConfig, LlamaForCausalLM, LogitsProcessorList

from antidistill.watermark import Key, parse_protection

from ..measures.audit import Tuples, reading_tuples, score
from ..measures.stats import clopper_pearson

VOCAB = 512
ALPHA = 0.01
SCHEMES = ("kgw:gamma=0.25,delta=2,h=1,hash=left", "unigram:gamma=0.5,delta=2", "gumbel:h=1")


def make_teacher(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
                      pad_token_id=0, bos_token_id=1, eos_token_id=2)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(15.0)  # peaked but not one-hot next-token distributions
    return model


class _ReadsItsInput(torch.nn.Module):
    """A clean suspect that reacts to the text it reads: at each position whose token x occurred
    before in the input, `react` adjusts the base model's logits given the token that followed
    x's previous occurrence."""

    def __init__(self, base):
        super().__init__()
        self.base = base

    def react(self, logits: torch.Tensor, follower: int) -> None:
        raise NotImplementedError

    def forward(self, input_ids, attention_mask=None):
        out = self.base(input_ids=input_ids, attention_mask=attention_mask)
        logits = out.logits.clone()
        for b, row in enumerate(input_ids.tolist()):
            last: dict[int, int] = {}
            for t, x in enumerate(row):
                if x in last:
                    self.react(logits[b, t], row[last[x] + 1])
                last[x] = t
        out.logits = logits
        return out


class Copier(_ReadsItsInput):
    """In-context induction: after token x it predicts the token that followed the previous
    occurrence of x in the input (else the base model's choice)."""

    def react(self, logits, follower):
        logits[follower] += 1e4


class Avoider(_ReadsItsInput):
    """Never repeats itself: after token x, if its own top-1 is the token that followed x's
    previous occurrence in the input, it predicts its second choice instead."""

    def react(self, logits, follower):
        first, second = logits.topk(2).indices.tolist()
        if first == follower:
            logits[second] += 1e4


@torch.no_grad()
def sample(model, prompts: torch.Tensor, new_tokens: int, processor=None, temperature: float = 1.0, seed: int = 0):
    torch.manual_seed(seed)
    lp = LogitsProcessorList([processor]) if processor is not None else None
    decode = dict(do_sample=True, top_k=0, top_p=1.0, temperature=temperature) if temperature > 0 else \
        dict(do_sample=False, top_k=None, top_p=None, temperature=None)
    out = model.generate(prompts, attention_mask=torch.ones_like(prompts), **decode,
                         max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                         logits_processor=lp, eos_token_id=None, pad_token_id=0)
    return out[:, prompts.shape[1]:]


def _row(setting: str, scheme: str, variant: str, log10_p: np.ndarray, n_scored: np.ndarray) -> dict:
    k = int(np.sum(log10_p < math.log10(ALPHA)))
    lo, hi = clopper_pearson(k, len(log10_p))
    p = np.power(10.0, log10_p)
    return {"setting": setting, "scheme": scheme, "variant": variant, "n_audits": len(log10_p),
            "false_positives": k, "fpr": k / len(log10_p), "fpr_lo": lo, "fpr_hi": hi,
            "valid": bool(lo <= ALPHA), "ks_p_uniform": float(sps.kstest(p, "uniform").pvalue),
            "median_n_scored": float(np.median(n_scored))}


def run(n_keys: int = 100, n_texts: int = 16, new_tokens: int = 48, out: Path | None = None, seed: int = 0,
        progress: bool = True) -> pd.DataFrame:
    t0 = time.perf_counter()
    teacher = make_teacher(seed)
    g = torch.Generator().manual_seed(seed)
    rows, per_audit = [], []
    warnings.filterwarnings("ignore", message="dedup=False")

    # -- reading mode: a fresh protected corpus per key, clean suspects
    suspects = {"teacher": teacher, "copier": Copier(teacher), "avoider": Avoider(teacher)}
    # (name, score() options, tuples from the contrast selection against the unprotected teacher?)
    variants = (("default", {}, False), ("contrast", {}, True),
                ("fresh-window", {"reading_rule": "fresh-window"}, False),
                ("unseen-tuple", {"reading_rule": "unseen-tuple"}, False),
                ("own-tuples", {"reading_rule": "own-tuples"}, False),
                ("all-positions", {"reading_rule": "none"}, False), ("dedup-off", {"dedup": False}, False))
    for scheme in SCHEMES:
        prot = parse_protection(scheme)
        res = {(s, v[0]): [] for s in suspects for v in variants}
        for i in range(n_keys):
            key = Key.from_text(f"bench-audit/{seed}/{scheme}/{i}")
            prompts = torch.randint(3, VOCAB, (n_texts, 8), generator=g)
            texts = sample(teacher, prompts, new_tokens, prot.processor(key, VOCAB), seed=seed * 100003 + i)
            pairs = [(p.tolist(), c.tolist()) for p, c in zip(prompts, texts)]
            det = prot.detector(key)
            for sname, suspect in suspects.items():
                t = reading_tuples(suspect, pairs, det.h)
                tc = reading_tuples(suspect, pairs, det.h, reference=teacher)
                for variant, kw, contrast in variants:
                    d = score(det, tc if contrast else t, **kw).detection
                    res[(sname, variant)].append((d.log10_p, d.n_scored))
                    per_audit.append({"setting": f"reading/right key/clean {sname}", "scheme": prot.spec,
                                      "variant": variant, "key": i, "log10_p": d.log10_p, "n_scored": d.n_scored})
        for (sname, variant), vals in res.items():
            a = np.array(vals)
            rows.append(_row(f"reading/right key/clean {sname}", prot.spec, variant, a[:, 0], a[:, 1]))
        if progress:
            print(f"  reading mode {prot.spec}: {n_keys} keys x {len(suspects)} suspects "
                  f"({time.perf_counter() - t0:.0f}s)", file=sys.stderr)

    # -- generation mode: the suspect samples once; many keys score its outputs
    from antidistill.watermark.windows import extract_windows

    for temp, label in ((0.0, "generation/greedy"), (1.0, "generation/T=1"), (0.3, "generation/T=0.3 (repetitive)")):
        prompts = torch.randint(3, VOCAB, (n_texts * 4, 8), generator=g)
        outs = sample(teacher, prompts, new_tokens * 2, temperature=temp, seed=seed + 17)
        for scheme in SCHEMES:
            prot = parse_protection(scheme)
            h = prot.context_width
            comp, prm = extract_windows([o.tolist() for o in outs], [p.tolist() for p in prompts], h)
            t = Tuples(comp.contexts, comp.tokens, n_texts=len(outs), exclude_pairs=(prm.contexts, prm.tokens))
            res = {"default": [], "dedup-off": []}
            for i in range(n_keys):
                det = prot.detector(Key.from_text(f"bench-audit-gen/{seed}/{i}"))
                for variant, kw in (("default", {}), ("dedup-off", {"dedup": False})):
                    d = score(det, t, mode="generation", **kw).detection
                    res[variant].append((d.log10_p, d.n_scored))
                    per_audit.append({"setting": label, "scheme": prot.spec, "variant": variant, "key": i,
                                      "log10_p": d.log10_p, "n_scored": d.n_scored})
            for variant, vals in res.items():
                a = np.array(vals)
                rows.append(_row(label, prot.spec, variant, a[:, 0], a[:, 1]))
        if progress:
            print(f"  {label}: {n_keys} keys x {len(SCHEMES)} schemes ({time.perf_counter() - t0:.0f}s)",
                  file=sys.stderr)

    table = pd.DataFrame(rows)
    if out is not None:
        write(out, table, pd.DataFrame(per_audit), n_keys, n_texts, new_tokens, seed, time.perf_counter() - t0)
    return table


def write(out: Path, table: pd.DataFrame, per_audit: pd.DataFrame, n_keys, n_texts, new_tokens, seed, seconds):
    from antidistill.watermark.errors import atomic_write

    from ..experiment.report import md_table

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "audit_null.csv") as fh:
        table.to_csv(fh, index=False)
    with atomic_write(out / "audit_null_per_audit.csv") as fh:
        per_audit.to_csv(fh, index=False)
    total = int(table.loc[table.variant == "default", "n_audits"].sum())
    md = ["# Null audits: false-positive rate of the radioactivity audit", "",
          f"`python -m antidistill.eval.bench.audit --keys {n_keys}`: {total} audits with the default (valid) "
          f"settings, plus the same tuples scored with the invalid variants; alpha = {ALPHA}; {n_texts} texts of "
          f"{new_tokens} tokens per reading-mode audit; seed {seed}; {seconds:.0f} s on this machine "
          f"({torch.get_num_threads()} torch threads).", "",
          "A variant is valid when its empirical FPR is <= alpha within the exact 95% interval (`valid`), and its "
          "p-values should pass the KS test for uniformity (`ks_p_uniform`; reading-mode `default` p-values "
          "come from a few hundred tuples, so their discreteness alone can lower it slightly; the unseen-tuple rule "
          "is conservative by construction, so it may also lean toward large p-values). Reading-mode variants: "
          "`default` is the audit's own rule on top-1 predictions (fresh windows for h >= 1, unseen tuples for "
          "h = 0); `contrast` is the same rule on the tokens each suspect prefers most over the unprotected "
          "teacher (what `antidistill run` scores); `fresh-window` scores only windows that had not yet preceded "
          "a written token (exact); `unseen-tuple` scores predictions whose tuple the text had not written before "
          "that position (valid for KGW, unigram and Gumbel by a monotonicity argument, conservative); "
          "`own-tuples` drops predictions equal to any of the text's own tuples (selects against green: "
          "conservative, non-uniform); `all-positions` scores every prediction "
          "(a copying clean model looks radioactive); `dedup-off`: repeated tuples scored again.", "", md_table(table), ""]
    with atomic_write(out / "audit_null.md") as fh:
        fh.write("\n".join(md))
    with atomic_write(out / "audit_null.json") as fh:
        json.dump({"alpha": ALPHA, "n_keys": n_keys, "n_texts": n_texts, "new_tokens": new_tokens, "seed": seed,
                   "seconds": round(seconds, 1), "rows": table.to_dict(orient="records")}, fh, indent=2)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m antidistill.eval.bench.audit", description=__doc__.split("\n")[0])
    ap.add_argument("--keys", type=int, default=100, help="audits per scheme and setting (default 100)")
    ap.add_argument("--texts", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="20 keys, short texts (a smoke test)")
    ap.add_argument("--out", default="results/bench")
    args = ap.parse_args(argv)
    if args.quick:
        args.keys, args.texts, args.new_tokens = 20, 8, 32
    table = run(args.keys, args.texts, args.new_tokens, Path(args.out), args.seed)
    show = table[["setting", "scheme", "variant", "n_audits", "false_positives", "fpr", "fpr_lo", "fpr_hi", "valid"]]
    print(show.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
