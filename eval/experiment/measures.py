"""The measurements of run and evidence: each a small artifact in the store (built once, keyed by
its inputs), read back as a table. Grades, audits, teacher quality, detectability and key nulls.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd

from antidistill.students.attacks import by_stage
from antidistill.students.corpus import read_corpus
from antidistill.watermark import Key, parse_protection

from ..measures.audit import score
from ..measures.suspect import TupleCollection, score_keys, suspect_tuples
from ..measures.detectability import detectability as detectability_table, length_table
from ..measures.similarity import MiniLM
from ..measures.quality import correctness, teacher_quality
from ..measures.transfer import grade_items
from . import work
from .lab import Lab


def load(lab: Lab, student_dir: Path | None, seed: int):
    """A student to measure: the preset before distillation (None) or a trained folder."""
    return work.load_student(lab.cfg.student_model, student_dir, seed, lab.cache_dir)


# ------------------------------------------------------------ capability transfer
def grade_inputs(lab: Lab, student_dir: Path | None, seed: int) -> dict:
    e = lab.cfg.eval
    ident = student_dir.name if student_dir is not None else {"base": lab.cfg.student_model, "seed": seed}
    return lab.with_task({"student": ident, "n_test": e.n_test, "max_new_tokens": e.max_new_tokens, "seed": lab.seed})


def grades(lab: Lab, label: str, student_dir: Path | None, seed: int) -> pd.DataFrame:
    """The student's graded answers on the held-out test items."""
    e = lab.cfg.eval

    def build(tmp: Path) -> None:
        model, tok = load(lab, student_dir, seed)
        items = grade_items(model, tok, lab.task.examples("test", e.n_test, seed=lab.seed), task=lab.task,
                            max_new_tokens=e.max_new_tokens)
        items.to_csv(tmp / "items.csv", index=False)

    d = lab.store.build("evaluations", f"grade {label} (seed {seed})", "grades", grade_inputs(lab, student_dir, seed),
                        build)
    return pd.read_csv(d / "items.csv").assign(student=label, seed=seed)


def teacher_card(lab: Lab) -> dict:
    """What the report says of the teacher: the demo teacher's training card, or, for a named model,
    its greedy accuracy per skill on the students' test items (measured once, cached)."""
    card = lab.teacher_card()
    if card:
        return card
    e = lab.cfg.eval

    def build(tmp: Path) -> None:
        model, tok = lab.teacher()
        grade_items(model, tok, lab.task.examples("test", e.n_test, seed=lab.seed), task=lab.task,
                    max_new_tokens=e.max_new_tokens).to_csv(tmp / "items.csv", index=False)

    inputs = lab.with_task({"teacher": lab.teacher_id, "n_test": e.n_test, "max_new_tokens": e.max_new_tokens,
                            "seed": lab.seed})
    items = pd.read_csv(lab.store.build("evaluations", "grade teacher", "teacher-grades", inputs, build) / "items.csv")
    acc = {str(k): round(float(v), 4) for k, v in items.groupby("skill")["correct"].mean().items()}
    return {"accuracy": {**acc, "all": round(float(items["correct"].mean()), 4)}, "n_test": len(items),
            "decoding": "greedy", "task": lab.task.spec}


# ------------------------------------------------------------ radioactivity audits
def audit_tuples(lab: Lab, prot, model, tok, mode: str, decode_attacks=(), retokenize: bool = False):
    """A suspect's audit tuples on prot's audit texts, and the choice-point mask (None: every
    position), collected the audit's way (`measures.suspect`); in generation mode the suspect's own
    `decode_attacks` change how it decodes. `retokenize`: the suspect speaks another tokenizer, and
    its completions are read back in the teacher's (generation mode)."""
    e, mnt = lab.cfg.eval, lab.cfg.corpus.max_new_tokens
    corpus = read_corpus(lab.corpus(prot, "audit"))
    how = TupleCollection(mode=mode, selection=e.audit_selection, temperature=e.audit_temperature, max_new_tokens=mnt,
                          seed=lab.seeds.audit_generation,
                          max_reference_prob=float(e.choice_filter) if e.choice_filter else None)
    settings = {}
    for a in decode_attacks if mode == "generation" else ():  # the suspect's own decoding choices
        settings.update(work.suspect_decoding(a, model, tok, prompts=corpus.prompts, reference=lab.teacher()[0],
                                              seed=lab.seeds.decode_attack, max_new_tokens=mnt))
    return suspect_tuples(model, tok, prot.detector(lab.key).h, how, records=corpus.records,
                          reference=lab.teacher()[0] if how.needs_reference else None, decode_settings=settings,
                          ours=lab.teacher()[1] if retokenize else None)


def audit_inputs(lab: Lab, prot, student_dir: Path, mode: str, retokenize: bool = False) -> dict:
    e = lab.cfg.eval
    inputs = {"student": student_dir.name, "texts": lab.corpus(prot, "audit").name, "protection": prot.spec,
              "mode": mode, "key": lab.key.fingerprint, "wrong_keys": e.wrong_keys, "seed": lab.seed,
              "max_new_tokens": lab.cfg.corpus.max_new_tokens, "rule": "auto/v2",
              "selection": e.audit_selection if mode == "reading" else "generated",
              "temperature": e.audit_temperature, "choice_filter": e.choice_filter,
              "reference": lab.teacher_id if e.choice_filter or e.audit_selection == "contrast" else None}
    if lab.attacks:
        inputs["attacks"] = [a.spec for a in lab.attacks]
    if retokenize:
        inputs["retokenized"] = True
    return inputs


def audit(lab: Lab, prot, label: str, student_dir: Path, mode: str, seed: int,
          retokenize: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One student audited with prot's key and with wrong keys on the same tuples: detections and
    curves. `retokenize`: the student has another tokenizer (generation mode, read back in ours)."""
    def build(tmp: Path) -> None:
        model, tok = load(lab, student_dir, seed)
        tuples, keep = audit_tuples(lab, prot, model, tok, mode, by_stage(lab.attacks, "decode"), retokenize)
        results = score_keys(prot, lab.key, tuples, keep=keep, n_wrong=lab.cfg.eval.wrong_keys, mode=mode)
        kinds = ["key"] + ["wrong key"] * (len(results) - 1)
        rows = [{"key_kind": kind, **r.detection.as_dict()} for kind, r in zip(kinds, results)]
        curves = [r.curve.assign(key_kind=kind, key_fingerprint=r.detection.key_fingerprint)
                  for kind, r in zip(kinds, results)]
        pd.DataFrame(rows).to_csv(tmp / "detections.csv", index=False)
        pd.concat(curves, ignore_index=True).to_csv(tmp / "curves.csv", index=False)

    d = lab.store.build("evaluations", f"audit {label} (seed {seed}) with {prot.scheme} key ({mode})", "audits",
                        audit_inputs(lab, prot, student_dir, mode, retokenize), build)
    tag = dict(protection=prot.spec, student=label, mode=mode, seed=seed)
    return pd.read_csv(d / "detections.csv").assign(**tag), pd.read_csv(d / "curves.csv").assign(**tag)


def _evidence_inputs(lab: Lab, spec: str, student_dir: Path, mode: str, decode: str | None) -> dict:
    e = lab.cfg.eval
    return {"student": student_dir.name, "texts": lab.corpus(lab.protections[spec], "audit").name,
            "protection": spec, "mode": mode, "key": lab.key.fingerprint, "decode": decode,
            "selection": e.audit_selection, "temperature": e.audit_temperature, "choice_filter": e.choice_filter,
            "max_new_tokens": lab.cfg.corpus.max_new_tokens, "seed": lab.seed}


def evidence_audit_inputs(lab: Lab, spec: str, student_dir: Path, mode: str, decode: str | None = None) -> dict:
    return {**_evidence_inputs(lab, spec, student_dir, mode, decode), "wrong_keys": lab.cfg.eval.wrong_keys, "v": 1}


def key_null_inputs(lab: Lab, spec: str, student_dir: Path, mode: str, n_keys: int) -> dict:
    return {**_evidence_inputs(lab, spec, student_dir, mode, None), "null_keys": n_keys, "v": 1}


def _suspect_tuples(lab: Lab, spec: str, student_dir: Path, mode: str, decode: str | None):
    model, tok = load(lab, student_dir, 0)
    return audit_tuples(lab, lab.protections[spec], model, tok, mode, [decode] if decode else [])


def evidence_audit(lab: Lab, spec: str, student_dir: Path, mode: str, decode: str | None = None) -> pd.DataFrame:
    """The student audited with the key and the run's wrong keys, deduplicated and not (E1 measures both)."""
    prot = lab.protections[spec]

    def build(tmp: Path) -> None:
        tuples, keep = _suspect_tuples(lab, spec, student_dir, mode, decode)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # dedup off is measured on purpose (E1)
            by_dedup = [score_keys(prot, lab.key, tuples, keep=keep, n_wrong=lab.cfg.eval.wrong_keys, mode=mode,
                                   dedup=dedup) for dedup in (True, False)]
        rows = []
        for i, pair in enumerate(zip(*by_dedup)):  # per key: deduplicated, then not
            for r in pair:
                d = r.detection.as_dict()
                rows.append({"key_kind": "key" if i == 0 else "wrong key", "key_fingerprint": d.pop("key_fingerprint"),
                             **d})
        pd.DataFrame(rows).to_csv(tmp / "audit.csv", index=False)

    label = f"audit {student_dir.name[:8]} {spec.split(':')[0]} {mode}" + (f" {decode}" if decode else "")
    inputs = evidence_audit_inputs(lab, spec, student_dir, mode, decode)
    d = lab.store.build("evaluations", label, "evidence-audits", inputs, build)
    return pd.read_csv(d / "audit.csv").assign(protection=spec, mode=mode, decode=decode or "none")


def key_null(lab: Lab, spec: str, student_dir: Path, mode: str, n_keys: int) -> pd.DataFrame:
    """A clean student's deduplicated audit p-value under n_keys random keys (the same tuples):
    what the guarantee is about. A fixed wrong key's p-values cluster over students that share
    tuples; over keys they must be uniform (at most alpha below alpha)."""
    prot = lab.protections[spec]

    def build(tmp: Path) -> None:
        tuples, keep = _suspect_tuples(lab, spec, student_dir, mode, None)
        lp = [score(prot.detector(Key.from_text(f"antidistill/key-null/{i}")), tuples, mode=mode, keep=keep)
              .detection.log10_p for i in range(n_keys)]
        pd.DataFrame({"key_index": range(n_keys), "log10_p": lp}).to_csv(tmp / "key_null.csv", index=False)

    label = f"key null {student_dir.name[:8]} {spec.split(':')[0]} {mode} ({n_keys} keys)"
    inputs = key_null_inputs(lab, spec, student_dir, mode, n_keys)
    d = lab.store.build("evaluations", label, "evidence-key-nulls", inputs, build)
    return pd.read_csv(d / "key_null.csv").assign(protection=spec, mode=mode)


# ------------------------------------------------------------ the teacher's corpora
def quality(lab: Lab, corpora: dict[str, Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The teacher-quality table and the per-prompt correctness of each corpus (for the frontier)."""
    inputs = lab.with_task({"corpora": {s: p.name for s, p in corpora.items()}, "reference": lab.teacher_id,
                            "perplexity_texts": lab.cfg.eval.perplexity_texts})
    if lab.cfg.eval.similarity:
        inputs["similarity"] = "all-MiniLM-L6-v2"

    def build(tmp: Path) -> None:
        model, tok = lab.teacher()
        recs = {s: read_corpus(p).records for s, p in corpora.items()}
        encoder = MiniLM(next(model.parameters()).device) if lab.cfg.eval.similarity else None
        teacher_quality(recs, reference=model, eos_id=tok.eos_token_id, task=lab.task, encoder=encoder,
                        perplexity_texts=lab.cfg.eval.perplexity_texts).to_csv(tmp / "quality.csv", index=False)
        items = [correctness(r, lab.task).assign(protection=s) for s, r in recs.items()]
        pd.concat(items, ignore_index=True).to_csv(tmp / "items.csv", index=False)

    d = lab.store.build("evaluations", "teacher quality", "quality", inputs, build)
    return pd.read_csv(d / "quality.csv"), pd.read_csv(d / "items.csv")


def detectability(lab: Lab, corpora: dict[str, Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """How detectable each watermark is in the teacher's outputs, clean and after token edits."""
    attacks = [("none", 0.0)] + [(a, float(r)) for a, r in lab.cfg.eval.attacks]
    det_specs = [s for s in corpora if parse_protection(s).has_detector]
    inputs = {"corpora": {s: p.name for s, p in corpora.items()}, "attacks": attacks,
              "key": lab.key.fingerprint, "seed": lab.seed}

    def build(tmp: Path) -> None:
        raw = read_corpus(corpora["none"])
        pos = {}
        for s in det_specs:
            c = read_corpus(corpora[s])
            pos[s] = (c.sequences, c.prompts)
        table, roc = detectability_table(pos, (raw.sequences, raw.prompts), lab.key, int(raw.manifest["vocab_size"]),
                                         attacks=attacks, seed=lab.seed)
        table.to_csv(tmp / "detectability.csv", index=False)
        roc.to_csv(tmp / "roc.csv", index=False)

    d = lab.store.build("evaluations", "detectability", "detectability", inputs, build)
    return pd.read_csv(d / "detectability.csv"), pd.read_csv(d / "roc.csv")


def lengths(lab: Lab, corpora: dict[str, Path]) -> pd.DataFrame:
    """Single-text detection against length of each watermark's outputs (eval.lengths), on every
    position and on the choice points the unprotected teacher leaves open (eval.choice_filter)."""
    from antidistill.watermark.entropy import ChoiceRule

    e = lab.cfg.eval
    det_specs = [s for s in corpora if parse_protection(s).has_detector]
    inputs = {"corpora": {s: corpora[s].name for s in ["none", *det_specs]}, "lengths": list(e.lengths),
              "alpha": lab.cfg.alpha, "choice_filter": e.choice_filter, "key": lab.key.fingerprint,
              "reference": lab.teacher_id}

    def build(tmp: Path) -> None:
        def texts(spec):
            c = read_corpus(corpora[spec])
            return c.sequences, c.prompts

        rule = ChoiceRule(max_top1=float(e.choice_filter) if e.choice_filter else None)
        length_table(lab.teacher()[0], {s: texts(s) for s in det_specs}, texts("none"), lab.key, lab.cfg.alpha,
                     e.lengths, rule).to_csv(tmp / "lengths.csv", index=False)

    return pd.read_csv(lab.store.build("evaluations", "detection against length", "lengths", inputs, build)
                       / "lengths.csv")
