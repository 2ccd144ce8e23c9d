"""results/NAME/: report.md (tables, verdicts in words, figures inline), CSVs, PNGs, config, versions."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from antidistill.students.cache import ensure_out_dir
from antidistill.watermark import parse_protection
from antidistill.watermark.errors import atomic_write

from ..measures.audit import format_p
from . import plots
from .results import RunResults


def md_table(df: pd.DataFrame, digits: int = 3) -> str:
    """A GitHub markdown table (no extra dependency)."""
    def cell(v):
        if isinstance(v, (float, np.floating)):
            if math.isnan(v):
                return "–"
            if math.isinf(v):
                return "inf" if v > 0 else "-inf"
            if v == int(v) and abs(v) < 1e9:  # counts (records, tokens) stored as floats: print them whole
                return str(int(v))
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


def frontier_points(res: RunResults, alpha: float) -> pd.DataFrame:
    """The frontier table (measures/frontier.py) with each student's DE and transfer ratio, and the
    watermark evidence (detectability, audits) written beside each point."""
    if res.frontier is None:
        return pd.DataFrame()
    t = res.transfer
    t = t[t.skill == "all"].set_index("student")
    rows = []
    for _, f in res.frontier.iterrows():
        spec = f["protection"]
        s = _student_label(spec)
        note, short = [], []
        if res.detectability is not None:
            d = res.detectability
            d = d[(d.protection == spec) & (d.attack == "none")]
            if len(d):
                note.append(f"TPR@1e-3 {d['tpr@0.001'].iloc[0]:.2f}")
                short.append(f"TPR {d['tpr@0.001'].iloc[0]:.2f}")
        if res.audit is not None:
            a = res.audit
            a = a[(a.protection == spec) & (a.student == s) & (a.key_kind == "key")]
            for mode, g in a.groupby("mode", sort=False):
                n_sig = int((g.log10_p < math.log10(alpha)).sum())
                note.append(f"audit[{mode[:4]}] {n_sig}/{len(g)} seeds significant, max log10p {g.log10_p.max():.1f}")
                short.append(f"{mode[0]} {n_sig}/{len(g)}")
        r = t.loc[s]
        rows.append({**f.to_dict(), "de": r["de"], "de_lo": r["de_lo"], "de_hi": r["de_hi"],
                     "transfer": r.get("transfer", np.nan), "note": ", ".join(note), "short_note": " ".join(short)})
    return pd.DataFrame(rows)


def _seed_list(ps) -> str:
    return ", ".join(format_p(v) for v in ps)


def _verdicts(res: RunResults, alpha: float) -> list[str]:
    """Audit verdicts in words, one line per (protection, mode), with the p-value of every seed."""
    out = []
    if res.audit is None:
        return out
    a = res.audit
    cut = math.log10(alpha)
    for (spec, mode), g in a.groupby(["protection", "mode"], sort=False):
        own = g[(g.student == spec) & (g.key_kind == "key")].sort_values("seed")
        raw = g[(g.student == "raw") & (g.key_kind == "key")].sort_values("seed")
        wrong = g[g.key_kind == "wrong key"]
        if len(own):
            k = int((own.log10_p < cut).sum())
            v = "**RADIOACTIVE** in every seed" if k == len(own) else "**NOT DETECTED** in any seed" if k == 0 \
                else f"RADIOACTIVE in **{k} of {len(own)}** seeds only"
            out.append(f"- **{spec}**, {mode} mode: the students distilled on its outputs are {v} (p per seed "
                       f"{', '.join(map(str, own.seed))}: {_seed_list(own.log10_p)}; "
                       f"{int(own.n_scored.min())}-{int(own.n_scored.max())} distinct tuples scored).")
        if len(raw):
            k = int((raw.log10_p < cut).sum())
            v = "not detected in any seed" if k == 0 else f"RADIOACTIVE in {k} of {len(raw)} seeds (a false positive!)"
            out.append(f"  - null control: the raw-distilled students with the same key are {v} "
                       f"(p per seed: {_seed_list(raw.log10_p)}).")
        if len(wrong):
            n_fp = int((wrong.log10_p < cut).sum())
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


def _seeds_p(r) -> list[float]:
    return [float(v) for v in str(r.p_vs_raw_seeds).split()]


def _transfer_words(t: pd.DataFrame) -> list[str]:
    out = []
    allk = t[t.skill == "all"].set_index("student")
    if "raw" not in allk.index:
        return out
    raw = allk.loc["raw"]
    out.append(f"- **raw** (distilled on unprotected outputs): {raw.accuracy:.1%} [{raw.acc_lo:.1%}, {raw.acc_hi:.1%}] "
               f"over {int(raw.n_seeds)} training seeds (per seed: {raw.acc_seeds}).")
    for s, r in allk.iterrows():
        if s in ("raw", "base"):
            continue
        ps = _seeds_p(r)
        k = sum(p < 0.05 for p in ps)
        out.append(f"- **{s}**: student accuracy {r.accuracy:.1%} [{r.acc_lo:.1%}, {r.acc_hi:.1%}] vs raw "
                   f"{raw.accuracy:.1%}; DE = {r.de:.2f} [{r.de_lo:.2f}, {r.de_hi:.2f}] (per seed {r.de_seeds}), "
                   f"transfer ratio {r.transfer:.2f} [{r.transfer_lo:.2f}, {r.transfer_hi:.2f}]; against raw of the same "
                   f"seed, exact paired p = {', '.join(f'{p:.2g}' for p in ps)} ({k} of {len(ps)} seeds below 0.05).")
    return out


MARGIN_DECADES = 2  # an audit verdict is robust when every seed's p-value clears alpha by this many orders
RAW_BAR = 0.5  # the demo raw student must learn most of the suite: its pooled 99% interval above this


def _conclusions(res: RunResults, alpha: float, demo: bool = True) -> tuple[list[str], list[str]]:
    """(robust, fragile) conclusions. Robust: capability claims whose pooled 99% interval over seeds
    and items excludes the null (DE = 1), audit verdicts (one per student) that hold in every seed
    with p-values MARGIN_DECADES orders of magnitude beyond alpha. Fragile: what holds at 95% or in
    some seeds only. Each line gives the other view beside it (per-seed counts, the pooled interval).
    `demo`: the demo suite, whose raw student has a known bar to clear (RAW_BAR)."""
    robust, fragile = [], []
    if res.transfer is not None:
        allk = res.transfer[res.transfer.skill == "all"].set_index("student")
        for s, r in allk.iterrows():
            if s in ("raw", "base") or not math.isfinite(r.de):
                continue
            des = [float(v) for v in str(r.de_seeds).split()]
            ps = _seeds_p(r)
            n = len(ps)
            k_less = sum(d < 1 and p < 0.05 for d, p in zip(des, ps))
            k_more = sum(d > 1 and p < 0.05 for d, p in zip(des, ps))
            stats = (f"DE {r.de:.2f}, 95% [{r.de_lo:.2f}, {r.de_hi:.2f}], 99% [{r.de_lo_99:.2f}, "
                     f"{r.de_hi_99:.2f}]")
            if r.de_hi < 1 or r.de_lo > 1:  # the pooled 95% interval picks a direction
                less = r.de_hi < 1
                k, k_other = (k_less, k_more) if less else (k_more, k_less)
                line = (f"**{s}** teaches its student {'less' if less else 'more'} than raw: {stats}; significant "
                        f"(paired p < 0.05) in {k} of {n} seeds"
                        + (f", the other way in {k_other}" if k_other else ""))
                if (r.de_hi_99 < 1) if less else (r.de_lo_99 > 1):
                    robust.append(line + ".")
                else:
                    fragile.append(line + " (the 95% interval excludes 1, the 99% does not).")
            elif k_less or k_more:  # some seeds differ from raw, the pooled interval does not: one line
                ways = " and ".join(f"{w} in {k} of {n} seeds" for w, k in (("less", k_less), ("more", k_more)) if k)
                fragile.append(f"**{s}** teaches its student significantly (paired p < 0.05) {ways} than raw, "
                               f"but the pooled interval includes 1: {stats}.")
        if demo and "raw" in allk.index:  # the demo world's bar for a student that learned the suite
            r = allk.loc["raw"]
            seeds = [float(v) for v in str(r.acc_seeds).split()]
            line = (f"The raw student learns most of the suite: {r.accuracy:.1%}, 99% [{r.acc_lo_99:.1%}, "
                    f"{r.acc_hi_99:.1%}] (bar: above {RAW_BAR:.0%}); lowest seed {min(seeds):.1%}.")
            (robust if r.acc_lo_99 > RAW_BAR else fragile).append(line)
    if res.audit is not None:
        a = res.audit
        cut = math.log10(alpha)
        for (spec, student, mode), g in a[a.key_kind == "key"].groupby(["protection", "student", "mode"], sort=False):
            lp, n = g.log10_p.to_numpy(), len(g)
            k = int((lp < cut).sum())
            ps = f"p per seed {_seed_list(lp)}"
            if student == spec:
                if k == n:
                    line = f"The {mode}-mode audit with the {spec} key convicts its own students in every seed ({ps})"
                    margin = lp.max() <= cut - MARGIN_DECADES
                elif k == 0:
                    line = f"The {mode}-mode audit with the {spec} key convicts none of its own students ({ps})"
                    margin = lp.min() >= cut + MARGIN_DECADES
                else:
                    fragile.append(f"The {mode}-mode audit with the {spec} key convicts its own students in {k} of "
                                   f"{n} seeds ({ps}).")
                    continue
            else:
                line = (f"The {mode}-mode audit with the {spec} key convicts none of the raw students (null control; "
                        f"{ps})" if k == 0 else
                        f"The {mode}-mode audit with the {spec} key FALSELY convicts the raw students in {k} of {n} "
                        f"seeds ({ps})")
                margin = k == 0 and lp.min() >= cut + MARGIN_DECADES
            if margin:
                robust.append(line + ".")
            else:
                fragile.append(line + f" (within {MARGIN_DECADES} orders of magnitude of alpha in some seed).")
    return robust, fragile


def _headline(res: RunResults) -> list[str]:
    """Per protection: what its student keeps (DE with its interval) and what users lose."""
    if res.transfer is None or res.quality is None:
        return []
    t = res.transfer
    t = t[t.skill == "all"].set_index("student")
    q = res.quality.set_index("protection")
    out = []
    for spec in q.index:
        s = _student_label(spec)
        if spec == "none" or s not in t.index:
            continue
        r, qr = t.loc[s], q.loc[spec]
        where = "wholly below 1" if r.de_hi < 1 else "wholly above 1" if r.de_lo > 1 else "includes 1"
        de = (f"DE {r.de:.2f} [{r.de_lo:.2f}, {r.de_hi:.2f}], interval {where}" if math.isfinite(r.de)
              else "DE undefined (the raw student answers no test item: nothing to keep or lose)")
        cost = (f"teacher accuracy {100 * qr.delta_vs_none:+.1f} points vs none (paired exact p = {qr.p_paired:.2g}, "
                + ("significant" if qr.p_paired < 0.05 else "not significant") + " at 5%)")
        out.append(f"- **{spec}**: {de}; {cost}.")
    return out


def _matched_words(fr: pd.DataFrame) -> list[str]:
    out = []
    if "vs_temperature" not in fr or (fr.family == "temperature").sum() < 2:
        return out
    tr = fr[fr.family == "temperature"]
    lo, hi = tr.teacher_acc.min(), tr.teacher_acc.max()
    for _, r in fr[fr.family != "temperature"].iterrows():
        if not np.isfinite(r.vs_temperature):
            out.append(f"- **{r.protection}**: teacher accuracy {r.teacher_acc:.1%} lies outside temperature's range "
                       f"({lo:.1%}-{hi:.1%}); no matched comparison.")
            continue
        d, dlo, dhi = 100 * r.vs_temperature, 100 * r.vs_temperature_lo, 100 * r.vs_temperature_hi
        where = "below" if dhi < 0 else "above" if dlo > 0 else "not distinguishable from"
        out.append(f"- **{r.protection}**: at the teacher accuracy it keeps ({r.teacher_acc:.1%}) its student reaches "
                   f"{r.student_acc:.1%}, {d:+.1f} points vs temperature's curve [{dlo:+.1f}, {dhi:+.1f}]: {where} "
                   f"temperature (matched point inside temperature's range in {r.matched_share:.0%} of the bootstrap "
                   "replicates).")
    return out


def _header(cfg: dict, meta: dict, alpha: float) -> list[str]:
    """The run in one paragraph: teacher, protections, students, seeds, corpus, key, timings."""
    st = cfg["students"]
    seeds = meta.get("training_seeds", [cfg["seed"]])
    card = meta.get("teacher_card") or {}
    md = [f"# antidistill run: {cfg['name']}", ""]
    md += [f"Task `{cfg.get('task', 'demo')}`; teacher `{meta['teacher']}`; protections {', '.join(f'`{p}`' for p in cfg['protections'])}; "
           f"students `{st['preset']}` ({st['mode']}"
           f"{', LoRA ' + st['lora'] if st['lora'] else ', full fine-tuning'}, "
           f"{str(st['max_steps']) + ' steps' if st['max_steps'] else format(st['epochs'], 'g') + (' epoch' if st['epochs'] == 1 else ' epochs')} at batch "
           f"{st['batch_size']}), each trained with {len(seeds)} seeds ({', '.join(map(str, seeds))}); "
           f"{cfg['corpus']['n_prompts']} distillation prompts per corpus, up to {cfg['corpus']['max_new_tokens']} "
           f"new tokens at temperature {cfg['corpus']['temperature']}; key fingerprint `{meta['key_fingerprint']}`; "
           f"verdicts at alpha = {alpha:g}. Wall time {meta['wall_seconds']:.0f} s "
           f"(stages computed this time: {sum(e['status'] == 'computed' for e in meta['stages'])}, "
           f"cached: {sum(e['status'] == 'cached' for e in meta['stages'])}; per stage: "
           + ", ".join(f"{k} {v:.0f} s" for k, v in meta.get("stage_seconds", {}).items() if v >= 0)
           + "; CPU time per stage: "
           + ", ".join(f"{k} {v:.0f} s" for k, v in meta.get("stage_cpu_seconds", {}).items() if v >= 0)
           + f", on {meta.get('machine', {}).get('cpus', '?')} logical CPUs). Wall time depends on what else "
           "the machine runs; CPU time does not, and divided by the cores it approximates an idle machine's wall "
           "time.", ""]
    if card.get("accuracy"):
        acc = ", ".join(f"{k} {v:.1%}" for k, v in card["accuracy"].items())
        trained = (f"; trained in {card.get('train_seconds')} s with {card.get('torch_threads')} torch thread(s)"
                   if "train_seconds" in card else " (the students' test items)")
        md += [f"{'Demo teacher' if 'train_seconds' in card else 'Teacher'} (greedy, held-out test split, "
               f"n = {card.get('n_test')}): {acc}{trained}.", ""]
    return md


def _in_short(res: RunResults, alpha: float, seeds: list, demo: bool = True) -> list[str]:
    """The headline and the conclusions, robust and fragile."""
    md: list[str] = []
    head = _headline(res)
    if head:
        md += ["## In short", "", "What each protection's students keep of the raw student's accuracy (DE, 95% interval "
               "over seeds and items) and what it costs a legitimate user:", ""] + head + [""]
    robust, fragile = _conclusions(res, alpha, demo)
    if robust or fragile:
        md += ["## What carries over", "",
               f"Each student was trained with {len(seeds)} seeds (initialisation and data order) on the same corpus. "
               "A conclusion is listed as **robust** when it clears the null with margin: a capability claim when "
               "its pooled 99% interval over seeds and items excludes DE = 1, an audit verdict (one per student) "
               f"when it holds in every seed with p-values {MARGIN_DECADES} orders of magnitude beyond alpha. Robust "
               "conclusions are what another CPU model or thread count (other float paths) repeats; the per-seed "
               "counts are given beside them.", ""]
        md += ["Robust:", ""] + ([f"- {h}" for h in robust] or ["- none"]) + [""]
        if fragile:
            md += ["Not robust (near the edge: another machine may list them differently):", ""] + \
                [f"- {h}" for h in fragile] + [""]

    return md


def _frontier_section(out: Path, res: RunResults, alpha: float) -> list[str]:
    md: list[str] = []
    fr = frontier_points(res, alpha)
    if len(fr):
        _csv(out, "frontier.csv", fr)
        plots.frontier_figure(fr, out / "frontier.png")
        md += ["## Frontier", "", "Teacher accuracy under each protection (what a legitimate user gets: its sampled "
               "answers to the distillation prompts) against the accuracy of the students distilled on those outputs "
               "(held-out test items, mean over seeds); one curve per family; 95% intervals from one bootstrap over "
               "the teacher's prompts, the students' seeds and the test items.", "",
               "![frontier](frontier.png)", ""]
        words = _matched_words(fr)
        if words:
            md += ["At matched teacher accuracy, each protection's student accuracy minus temperature's (temperature's "
                   "points joined by straight lines; 95% bootstrap interval; negative = the protection teaches less "
                   "than temperature at the same cost to users):", ""] + words + [""]
        md += ["Beside each point: TPR at alpha = 1e-3 of single teacher outputs, and in how many seeds the audit "
               "convicts the student (r: reading mode, g: generation mode).", "",
               md_table(fr.drop(columns=["teacher_lo", "teacher_hi", "student_lo", "student_hi", "short_note"]
                                + ([] if words else ["vs_temperature", "vs_temperature_lo", "vs_temperature_hi",
                                                     "matched_share"]))), ""]
    return md


def _audit_section(out: Path, cfg: dict, res: RunResults, alpha: float) -> list[str]:
    """The radioactivity audit: method, verdicts, curves and the table."""
    if res.audit is None:
        if cfg["eval"]["audit"] and any(parse_protection(p).has_detector for p in res.sweeps):
            return ["## Radioactivity audit (auditor)", "", "Not run: the students' tokenizer is not the teacher's, so "
                    "they predict other token ids: reading mode cannot score our texts through them, and generation "
                    "mode (their outputs read back in the teacher's tokens) was not asked for, or a decode attack "
                    "was (its decoding is defined over the teacher's vocabulary).", ""]
        return []
    md: list[str] = []
    a = res.audit
    _csv(out, "radioactivity.csv", a)
    _csv(out, "radioactivity_curves.csv", res.audit_curves)
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
           "student, and wrong keys on the same tuples."
           + (" The students' tokenizer is not the teacher's: they are audited in generation mode only, their "
              "completions decoded to text and encoded with the teacher's tokenizer before scoring (a function of "
              "the text alone, so the test stays exact); reading mode would score choices over another vocabulary."
              if "reading" in cfg["eval"].get("audit_modes", ()) and "reading" not in set(a["mode"]) else ""), ""]
    md += _verdicts(res, alpha) + [""]
    for mode, g in res.audit_curves.groupby("mode", sort=False):
        lab = np.where(g.key_kind != "key", "wrong keys",
                       np.where(g.student == "raw", "raw-distilled student (null)", "student distilled on it"))
        lab = [f"{l} ({fp[:6]})" if l == "wrong keys" else l for l, fp in zip(lab, g.key_fingerprint)]
        lab = [f"{l} [{s}]" if l.startswith("wrong") else l for l, s in zip(lab, g.student)]
        lab = [f"{l}, seed {sd}" for l, sd in zip(lab, g.seed)]
        kind = np.where(g.key_kind != "key", "null", np.where(g.student == "raw", "control", "suspect"))
        plots.radioactivity_curves(g.assign(label=lab, kind=kind, panel=g.protection), out / f"radioactivity_{mode}.png",
                                   alpha, title=f"Radioactivity ({mode} mode)")
        md += [f"![radioactivity {mode}](radioactivity_{mode}.png)", ""]
    show = a[["protection", "mode", "student", "seed", "key_kind", "key_fingerprint", "n_scored", "n_tuples",
              "statistic", "z", "log10_p"]]
    md += [md_table(show), ""]
    return md


def _detectability_section(out: Path, res: RunResults) -> list[str]:
    """Detectability of single teacher outputs."""
    if res.detectability is None:
        return []
    md: list[str] = []
    d = res.detectability
    _csv(out, "detectability.csv", d)
    md += ["## Detectability on teacher outputs (auditor, product team)", "",
           "Each protected text alone against the unprotected outputs of the same prompts: flagged when its exact "
           "p < alpha (no fitted threshold; the empirical FPR is shown beside it). Edit attacks replace, delete or "
           "insert random tokens on both sides.", ""]
    if res.roc is not None and len(res.roc):
        _csv(out, "roc.csv", res.roc)
        plots.roc_figure(res.roc, out / "roc.png")
        md += ["![roc](roc.png)", ""]
    md += [md_table(d), ""]
    return md


def _lengths_section(out: Path, cfg: dict, res: RunResults) -> list[str]:
    """Single-text detection against the number of tokens seen."""
    if res.lengths is None:
        return []
    _csv(out, "detect_by_length.csv", res.lengths)
    cut = cfg["eval"]["choice_filter"]
    return ["## Single-text detection against length (auditor, product team)", "",
            f"Each output cut to its first n completion tokens (only outputs at least n long: n_pos, n_neg), flagged "
            f"when its exact p < alpha = {cfg['alpha']:g}. `rule` all scores every position; "
            + (f"top1<{cut:g} only the positions where the unprotected teacher's top-1 probability is below {cut:g} "
               "(forced tokens carry no watermark); " if cut else "")
            + "a SWEET text (kgw entropy=H) is scored where it was biased. fpr is the flag rate of the unprotected "
            "outputs under the same rule (each half read against the other as the reference).", "",
            md_table(res.lengths), ""]


def _quality_section(out: Path, res: RunResults, alpha: float) -> list[str]:
    """What each protection costs the teacher's users."""
    if res.quality is None:
        return []
    md: list[str] = []
    q = res.quality
    _csv(out, "teacher_quality.csv", q)
    md += ["## Teacher quality (product team)", "",
           "The teacher's sampled answers on the distillation prompts under each protection versus `none` on the "
           "same prompts. Perplexity is measured under the unprotected teacher; `next_token_entropy` is "
           "H(token | previous token) over the completions, in bits: how much of the wording the previous token "
           "leaves open (a sampler whose choice is a function of the previous token lowers it).", ""]
    md += _quality_words(q, alpha) + ["", md_table(q), ""]
    return md


def _transfer_section(out: Path, cfg: dict, res: RunResults) -> list[str]:
    """What the students learn, against base and raw."""
    if res.transfer is None:
        return []
    md: list[str] = []
    t = res.transfer
    _csv(out, "transfer.csv", t)
    _csv(out, "student_items.csv", res.items)
    md += ["## Capability transfer (researcher)", "",
           f"Students graded greedily on {cfg['eval']['n_test']} held-out test items, every training seed. `base` "
           "is the student before distillation, `raw` the one distilled on unprotected outputs. DE = acc / "
           "acc_raw; transfer ratio = (acc - acc_base) / (acc_raw - acc_base); 95% intervals from a bootstrap "
           "over seeds and items (paired across students); exact paired test against raw for each seed.", ""]
    md += _transfer_words(t) + ["", md_table(t[t.skill == "all"]), "", "<details><summary>per skill</summary>", "",
                                md_table(t[t.skill != "all"]), "", "</details>", ""]
    return md


def _reproduce(cfg: dict, meta: dict) -> list[str]:
    mach = meta.get("machine", {})
    from .config import PRESETS

    return ["## Reproduce", "", "```", f"antidistill run --preset {cfg['name']}"
           if cfg["name"] in PRESETS else "antidistill run CONFIG.toml", "```", "",
           "The exact config is in `config.json`; versions, seeds, timings, every stage's status and the CPU (model, "
           "instruction-set flags, torch threads) in `run.json`.", "",
           f"What is bit-reproducible: on the same machine (here {mach.get('cpu_model', 'unknown CPU')}, torch kernels "
           f"at {mach.get('torch_cpu_capability')}, each job's torch threads as `run.json` records them) and the same "
           "versions, a rerun gives the same numbers, since every stage is seeded (sampling, initialisation, data "
           "order). On another CPU model or thread count torch's CPU kernels may round differently, training "
           "amplifies those last bits, and exact numbers can differ; what carries over are the conclusions listed as "
           "robust under \"What carries over\", which is why every student is trained with several seeds and every "
           "interval covers them.", ""]


def write_config_and_meta(out: Path, cfg: dict, meta: dict) -> None:
    """config.json (the resolved config, key as fingerprint) and run.json (how the run went)."""
    with atomic_write(out / "config.json") as fh:
        json.dump(cfg, fh, indent=2)
        fh.write("\n")
    with atomic_write(out / "run.json") as fh:
        json.dump(meta, fh, indent=2, default=str)
        fh.write("\n")


def write_report(out: Path, cfg: dict, res: RunResults, meta: dict) -> Path:
    """results/NAME/: config.json, run.json, the CSVs and figures, and report.md section by section."""
    out = Path(out)
    ensure_out_dir(out)
    alpha = float(cfg["alpha"])
    write_config_and_meta(out, cfg, meta)
    seeds = meta.get("training_seeds", [cfg["seed"]])
    demo = cfg.get("task", "demo") == "demo"
    md = _header(cfg, meta, alpha) + _in_short(res, alpha, seeds, demo) + _frontier_section(out, res, alpha) \
        + _audit_section(out, cfg, res, alpha) + _detectability_section(out, res) + _lengths_section(out, cfg, res) \
        + _quality_section(out, res, alpha) \
        + _transfer_section(out, cfg, res) + _reproduce(cfg, meta)
    with atomic_write(out / "report.md") as fh:
        fh.write("\n".join(md))
    return out / "report.md"
