"""Attacks on the collected corpus, before training: rewrite, dilute, filter, deduplicate.

Every function takes corpus records (dicts with `prompt`, `completion`, `prompt_ids`,
`completion_ids`, and for task-suite prompts `skill`) and returns new records; inputs are never
modified. Functions that change a completion's text re-encode it with the student's tokenizer, so
the ids always match the text that is trained on.
"""
from __future__ import annotations

from collections import Counter, defaultdict

from antidistill.watermark.errors import UserError

from ..batching import encode_prompts
from ..models.sampling import generate_batch
from ..tasks.suite import parse_answer
from ..tasks.traces import answer_only, canonical_trace, parse_prompt, recompute_answer
from ..training.distill import mix_records


def retokenize(records: list[dict], tokenizer) -> list[dict]:
    """`completion_ids` re-encoded from each record's `completion` text (the text is what changed)."""
    ids = tokenizer([r["completion"] for r in records], add_special_tokens=False)["input_ids"] if records else []
    return [{**r, "completion_ids": list(c)} for r, c in zip(records, ids)]


def _skill(r: dict) -> str | None:
    if r.get("skill"):
        return r["skill"]
    parsed = parse_prompt(r["prompt"])
    return parsed[0] if parsed else None


def canonicalize(records: list[dict], tokenizer) -> list[dict]:
    """Every trace of a task-suite prompt in the suite's one canonical phrasing per step."""
    out = []
    for r in records:
        skill = _skill(r)
        out.append({**r, "completion": canonical_trace(skill, r["completion"])} if skill else dict(r))
    return retokenize(out, tokenizer)


def strip_traces(records: list[dict], tokenizer) -> list[dict]:
    """Only the final answer line of every trace (the chain of thought removed)."""
    return retokenize([{**r, "completion": answer_only(r["completion"])} for r in records], tokenizer)


def dilute(records: list[dict], clean: list[dict], rho: float, seed: int = 0) -> list[dict]:
    """len(records) records, a seeded fraction `rho` of them clean ones (rounded to a whole record)."""
    if not 0 <= rho <= 1:
        raise UserError(f"dilute: rho must lie in [0, 1], got {rho}")
    if round(rho * len(records)) > len(clean):
        raise UserError(f"dilute: rho={rho} needs {round(rho * len(records))} clean records, {len(clean)} given")
    return mix_records(records, clean, rho, seed)


def verified(records: list[dict], by: str = "recompute", k: int = 3) -> list[dict]:
    """Records whose final answer checks.

    `recompute`: the answer the attacker computes from the prompt (task-suite prompts; others are
    dropped, since nothing can be checked). `majority`: the records sharing a prompt are k (or more)
    samples of it; keep those whose answer is the strict majority answer of their prompt's samples
    (prompts with fewer than k samples, or no majority, lose all of theirs)."""
    if by == "recompute":
        out, checkable = [], 0
        for r in records:
            truth = recompute_answer(r["prompt"])
            checkable += truth is not None
            if truth is not None and parse_answer(r["completion"], _skill(r)) == truth:
                out.append(r)
        if records and not checkable:  # not "every answer was wrong": nothing could be checked at all
            raise UserError(f"attack filter: by=recompute checks task-suite prompts, and none of the {len(records)} "
                            "records has one; use by=majority")
        return out
    if by != "majority":
        raise UserError(f"filter: by must be recompute or majority, got {by!r}")
    groups: dict[str, list[int]] = defaultdict(list)
    answers = [parse_answer(r["completion"], _skill(r)) for r in records]
    for i, r in enumerate(records):
        groups[r["prompt"]].append(i)
    if records and max(map(len, groups.values())) < k:
        raise UserError(f"attack filter: by=majority needs k={k} samples of a prompt, and no prompt of the "
                        f"{len(records)} records has that many")
    keep = set()
    for idx in groups.values():
        if len(idx) < k:
            continue
        votes = Counter(answers[i] for i in idx if answers[i] is not None)
        if not votes:
            continue
        best, n = votes.most_common(1)[0]
        if n * 2 > len(idx):
            keep.update(i for i in idx if answers[i] == best)
    return [r for i, r in enumerate(records) if i in keep]


# ---------------------------------------------------------------- near duplicates


def _shingles(r: dict, n: int) -> set:
    toks = r.get("completion_ids") or r["completion"].split()
    toks = [str(t) for t in toks]
    if len(toks) < n:
        return {" ".join(toks)}
    return {" ".join(toks[i:i + n]) for i in range(len(toks) - n + 1)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def near_duplicates(records: list[dict], threshold: float = 0.8, num_perm: int = 128, shingle: int = 3,
                    seed: int = 0) -> list[int]:
    """Indices of records that are near-duplicates of an earlier kept record: MinHash LSH proposes
    candidates, exact Jaccard of token `shingle`-grams >= `threshold` confirms them."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    sets = [_shingles(r, shingle) for r in records]
    dropped = []
    for i, s in enumerate(sets):
        m = MinHash(num_perm=num_perm, seed=seed)
        m.update_batch([x.encode() for x in s])
        if any(jaccard(s, sets[j]) >= threshold for j in lsh.query(m)):
            dropped.append(i)
            continue
        lsh.insert(i, m)
    return dropped


def deduplicate(records: list[dict], threshold: float = 0.8, num_perm: int = 128, shingle: int = 3,
                seed: int = 0) -> list[dict]:
    drop = set(near_duplicates(records, threshold, num_perm, shingle, seed))
    return [r for i, r in enumerate(records) if i not in drop]


# ---------------------------------------------------------------- paraphrase with a language model

PARAPHRASE_INSTRUCTION = ("Rewrite the following text in your own words. Keep every number, every step and "
                          "the final line starting with 'Answer:' exactly as they are.\n\n")


def paraphrase(records: list[dict], model, tokenizer, *, student_tokenizer=None, temperature: float = 0.7,
               max_new_tokens: int = 256, batch_size: int = 8, seed: int = 0) -> list[dict]:
    """Every completion rewritten by `model` (any transformers causal LM and its tokenizer; a chat
    template is used when the tokenizer has one). The new text is re-encoded with
    `student_tokenizer` (default: the paraphraser's own)."""
    prompts = encode_prompts(tokenizer, [PARAPHRASE_INSTRUCTION + r["completion"] for r in records])
    texts = []
    for start in range(0, len(records), batch_size):
        out = generate_batch(model, tokenizer, prompts[start:start + batch_size], max_new_tokens=max_new_tokens,
                             do_sample=temperature > 0, temperature=temperature or 1.0, seed=seed + start)
        texts += [t.strip() for t in tokenizer.batch_decode(out.completions, skip_special_tokens=True)]
    return retokenize([{**r, "completion": t} for r, t in zip(records, texts)], student_tokenizer or tokenizer)
