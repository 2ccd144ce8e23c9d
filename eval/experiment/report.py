"""results/NAME/: report.md (tables, verdicts in words, figures inline), CSVs, PNGs, config, versions."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from antidistill.watermark.errors import UserError, atomic_write

from ..measures.audit import format_p


def md_table(df: pd.DataFrame, digits: int = 3) -> str:
    """A GitHub markdown table (no extra dependency)."""
    def cell(v):
        if isinstance(v, (float, np.floating)):
            if math.isnan(v):
                return "–"
            if math.isinf(v):
                return "inf" if v > 0 else "-inf"
            return f"{v:.{digits}g}" if abs(v) < 1e-3 or abs(v) >= 1e4 else f"{v:.{digits}f}".rstrip("0").rstrip(".")
        return str(v)

    cols = list(df.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(cell(r[c]) for c in cols) + " |")
    return "\n".join(lines)


def _csv(out: Path, name: str, df: pd.DataFrame) -> None:
    with atomic_write(out / name) as fh:
        df.to_csv(fh, index=False)


def _student_label(spec: str) -> str:
    return "raw" if spec == "none" else spec


def frontier_points(res: dict, alpha: float) -> pd.DataFrame:
    if "quality" not in res or "transfer" not in res:
        return pd.DataFrame()
    q = res["quality"].set_index("protection")
    t = res["transfer"]
    t = t[t.skill == "all"].set_index("student")
    rows = []
    for spec in q.index:
        s = _student_label(spec)
        if s not in t.index:
            continue
        note, short = [], []
        if "detectability" in res:
            d = res["detectability"]
            d = d[(d.protection == spec) & (d.attack == "none")]
            if len(d):
                note.append(f"TPR@1e-3 {d['tpr@0.001'].iloc[0]:.2f}")
                short.append(f"TPR {d['tpr@0.001'].iloc[0]:.2f}")
        if "audit" in res:
            a = res["audit"]
            a = a[(a.protection == spec) & (a.student == s) & (a.key_kind == "key")]
            for _, r in a.iterrows():
                note.append(f"audit[{r['mode'][:4]}] log10p {r['log10_p']:.1f}")
                short.append(f"{r['mode'][0]} {r['log10_p']:.1f}")
        rows.append({"protection": spec, "teacher_acc": q.loc[spec, "accuracy"], "teacher_lo": q.loc[spec, "acc_lo"],
                     "teacher_hi": q.loc[spec, "acc_hi"], "student_acc": t.loc[s, "accuracy"],
                     "student_lo": t.loc[s, "acc_lo"], "student_hi": t.loc[s, "acc_hi"],
                     "de": t.loc[s, "de"], "transfer": t.loc[s, "transfer"] if "transfer" in t else np.nan,
                     "note": ", ".join(note), "short_note": " ".join(short)})
    return pd.DataFrame(rows)


def _verdicts(res: dict, alpha: float) -> list[str]:
    out = []
    if "audit" in res:
        a = res["audit"]
        for (spec, mode), g in a.groupby(["protection", "mode"], sort=False):
            own = g[(g.student == spec) & (g.key_kind == "key")]
            raw = g[(g.student == "raw") & (g.key_kind == "key")]
            wrong = g[g.key_kind == "wrong key"]
            for _, r in own.iterrows():
                v = "RADIOACTIVE" if r.log10_p < math.log10(alpha) else "NOT DETECTED"
                out.append(f"- **{spec}**, {mode} mode: the student distilled on its outputs is **{v}** "
                           f"(p = {format_p(r.log10_p)}, {int(r.n_scored)} distinct tuples scored).")
            for _, r in raw.iterrows():
                v = "RADIOACTIVE (a false positive!)" if r.log10_p < math.log10(alpha) else "NOT DETECTED"
                out.append(f"  - null control: the raw-distilled student with the same key is {v} "
                           f"(p = {format_p(r.log10_p)}, {int(r.n_scored)} tuples).")
            if len(wrong):
                n_fp = int((wrong.log10_p < math.log10(alpha)).sum())
                out.append(f"  - null control: wrong keys on the same tuples: {n_fp} of {len(wrong)} significant "
                           f"(smallest p = {format_p(wrong.log10_p.min())}).")
    return out


def _quality_words(q: pd.DataFrame, alpha: float) -> list[str]:
    out = []
    base = q[q.protection == "none"]
    for _, r in q[q.protection != "none"].iterrows():
        words = "a measurable change" if r.p_paired < 0.05 else "no measurable change"
        out.append(f"- **{r.protection}**: teacher accuracy {r.accuracy:.1%} vs {base.accuracy.iloc[0]:.1%} without "
                   f"protection ({int(r.wins_vs_none)} items better, {int(r.losses_vs_none)} worse; exact paired "
                   f"p = {r.p_paired:.3g}): {words} at the 5% level on {int(r.n)} prompts.")
    return out


def _transfer_words(t: pd.DataFrame) -> list[str]:
    out = []
    allk = t[t.skill == "all"].set_index("student")
    if "raw" not in allk.index:
        return out
    raw = allk.loc["raw"]
    for s, r in allk.iterrows():
        if s in ("raw", "base"):
            continue
        sig = "significantly different from" if r.p_vs_raw < 0.05 else "not significantly different from"
        out.append(f"- **{s}**: student accuracy {r.accuracy:.1%} [{r.acc_lo:.1%}, {r.acc_hi:.1%}] vs raw "
                   f"{raw.accuracy:.1%}; DE = {r.de:.2f} [{r.de_lo:.2f}, {r.de_hi:.2f}], transfer ratio "
                   f"{r.transfer:.2f} [{r.transfer_lo:.2f}, {r.transfer_hi:.2f}]; {sig} raw (paired exact p = "
                   f"{r.p_vs_raw:.3g}).")
    return out


def write_report(out: Path, cfg: dict, res: dict, meta: dict) -> Path:
    from . import plots

    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create output folder {out} ({err.strerror}); choose a writable --out") from None
    alpha = float(cfg["alpha"])
    with atomic_write(out / "config.json") as fh:
        json.dump(cfg, fh, indent=2)
        fh.write("\n")
    with atomic_write(out / "run.json") as fh:
        json.dump(meta, fh, indent=2, default=str)
        fh.write("\n")
    md = [f"# antidistill run: {cfg['name']}", ""]
    card = meta.get("teacher_card") or {}
    md += [f"Teacher `{meta['teacher']}`; protections {', '.join(f'`{p}`' for p in cfg['protections'])}; "
           f"students `{cfg['students']['preset']}` ({cfg['students']['mode']}"
           f"{', LoRA ' + cfg['students']['lora'] if cfg['students']['lora'] else ', full fine-tuning'}); "
           f"{cfg['corpus']['n_prompts']} distillation prompts per corpus, up to {cfg['corpus']['max_new_tokens']} "
           f"new tokens at temperature {cfg['corpus']['temperature']}; key fingerprint `{meta['key_fingerprint']}`; "
           f"seed {cfg['seed']}; verdicts at alpha = {alpha:g}. Wall time {meta['wall_seconds']:.0f} s "
           f"(stages computed this time: {sum(e['status'] == 'computed' for e in meta['stages'])}, "
           f"cached: {sum(e['status'] == 'cached' for e in meta['stages'])}).", ""]
    if card.get("accuracy"):
        acc = ", ".join(f"{k} {v:.1%}" for k, v in card["accuracy"].items())
        md += [f"Demo teacher (greedy, held-out test split, n = {card.get('n_test')}): {acc}; trained in "
               f"{card.get('train_seconds')} s.", ""]

    fr = frontier_points(res, alpha)
    if len(fr):
        _csv(out, "frontier.csv", fr)
        plots.frontier_figure(fr, out / "frontier.png")
        md += ["## Frontier", "", "Teacher accuracy under each protection (what a legitimate user gets) against the "
               "accuracy of a student distilled on those outputs; 95% intervals (exact for the teacher, bootstrap "
               "for the student); detectability and audit results written beside each point.", "",
               "![frontier](frontier.png)", "",
               "Beside each point: TPR at alpha = 1e-3 of single teacher outputs, and the audit's log10 p of the "
               "student distilled on them (r: reading mode, g: generation mode).", "",
               md_table(fr.drop(columns=["teacher_lo", "teacher_hi", "student_lo", "student_hi", "short_note"])), ""]
    if "audit" in res:
        a = res["audit"]
        _csv(out, "radioactivity.csv", a)
        _csv(out, "radioactivity_curves.csv", res["audit_curves"])
        md += ["## Radioactivity audit (auditor)", "",
               "Each student is audited with each watermark's key on held-out protected texts (reading mode: the "
               "suspect's predictions under teacher forcing"
               + (" (the token it prefers most over the unprotected teacher among those the teacher finds plausible, "
                  "which shows a learned bias even where its top-1 choice is the teacher's usual one)"
                  if cfg["eval"].get("audit_selection") == "contrast" else " (its top-1 tokens)")
               + ", scored only where a clean model cannot have copied "
               "the watermark from the text it reads: for h >= 1 at fresh windows, i.e. windows that had not yet "
               "preceded a watermarked token in the same text (exact); for h = 0 (unigram), where only a text's first "
               "window is fresh, at tuples the text had not written earlier, which a KGW-style sampler makes at most "
               "as likely green as chance (valid, conservative); generation mode: the suspect's "
               + ("greedy outputs" if not cfg["eval"].get("audit_temperature") else
                  f"samples at temperature {cfg['eval']['audit_temperature']:g}")
               + " on the audit prompts, tuples that occur in the prompts excluded). "
               + (f"Only choice points are scored: positions where the unprotected teacher's top-1 probability, "
                  f"given the prefix, is below {cfg['eval']['choice_filter']:g} (forced tokens carry no watermark; "
                  "the filter never looks at the scored token, so it does not bias the test). "
                  if cfg["eval"].get("choice_filter") else "")
               + "Tuples are deduplicated; p-values are binomial / Gamma tails. Null controls in the same run: the raw-distilled "
               "student, and wrong keys on the same tuples.", ""]
        md += _verdicts(res, alpha) + [""]
        for mode, g in res["audit_curves"].groupby("mode", sort=False):
            lab = np.where(g.key_kind != "key", "wrong keys",
                           np.where(g.student == "raw", "raw-distilled student (null)", "student distilled on it"))
            lab = [f"{l} ({fp[:6]})" if l == "wrong keys" else l for l, fp in zip(lab, g.key_fingerprint)]
            lab = [f"{l} [{s}]" if l.startswith("wrong") else l for l, s in zip(lab, g.student)]
            kind = np.where(g.key_kind != "key", "null", np.where(g.student == "raw", "control", "suspect"))
            plots.radioactivity_curves(g.assign(label=lab, kind=kind, panel=g.protection), out / f"radioactivity_{mode}.png",
                                       alpha, title=f"Radioactivity ({mode} mode)")
            md += [f"![radioactivity {mode}](radioactivity_{mode}.png)", ""]
        show = a[["protection", "mode", "student", "key_kind", "key_fingerprint", "n_scored", "n_tuples", "statistic",
                  "z", "log10_p"]]
        md += [md_table(show), ""]
    if "detectability" in res:
        d = res["detectability"]
        _csv(out, "detectability.csv", d)
        md += ["## Detectability on teacher outputs (auditor, product team)", "",
               "Each protected text alone against the unprotected outputs of the same prompts: flagged when its exact "
               "p < alpha (no fitted threshold; the empirical FPR is shown beside it). Edit attacks replace, delete or "
               "insert random tokens on both sides.", ""]
        if "roc" in res and len(res["roc"]):
            _csv(out, "roc.csv", res["roc"])
            plots.roc_figure(res["roc"], out / "roc.png")
            md += ["![roc](roc.png)", ""]
        md += [md_table(d), ""]
    if "quality" in res:
        q = res["quality"]
        _csv(out, "teacher_quality.csv", q)
        md += ["## Teacher quality (product team)", "",
               "The teacher's sampled answers on the distillation prompts under each protection versus `none` on the "
               "same prompts. Perplexity is measured under the unprotected teacher.", ""]
        md += _quality_words(q, alpha) + ["", md_table(q), ""]
    if "transfer" in res:
        t = res["transfer"]
        _csv(out, "transfer.csv", t)
        _csv(out, "student_items.csv", res["items"])
        md += ["## Capability transfer (researcher)", "",
               f"Students graded greedily on {cfg['eval']['n_test']} held-out test items. `base` is the student "
               "before distillation, `raw` the one distilled on unprotected outputs. DE = acc / acc_raw; transfer "
               "ratio = (acc - acc_base) / (acc_raw - acc_base); paired bootstrap 95% intervals; exact paired test "
               "against raw.", ""]
        md += _transfer_words(t) + ["", md_table(t[t.skill == "all"]), "", "<details><summary>per skill</summary>", "",
                                    md_table(t[t.skill != "all"]), "", "</details>", ""]
    md += ["## Reproduce", "", "```", f"antidistill run --preset {cfg['name']}" if cfg["name"] in ("default", "smoke")
           else "antidistill run CONFIG.toml", "```", "",
           "The exact config is in `config.json`; versions, seeds, timings and every stage's status in `run.json`.", ""]
    with atomic_write(out / "report.md") as fh:
        fh.write("\n".join(md))
    return out / "report.md"
