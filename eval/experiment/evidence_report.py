"""results/evidence/: the E1, E2, E4 tables (CSV, markdown), figures (PNG), config, wall time."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

from antidistill.students.cache import ensure_out_dir
from antidistill.watermark.errors import atomic_write

from .plots import _save, plt
from .report import md_table, write_config_and_meta
from .results import E1Results, E2Results, E4Results, EvidenceResults


def seed_item_ci(correct: np.ndarray, n_boot: int = 2000, conf: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile CI of mean accuracy, resampling seeds and items (rows: seeds, columns: the same items)."""
    m = np.asarray(correct, dtype=float)
    rng = np.random.default_rng(seed)
    s = rng.integers(0, m.shape[0], size=(n_boot, m.shape[0]))
    i = rng.integers(0, m.shape[1], size=(n_boot, m.shape[1]))
    boot = m[s[:, :, None], i[:, None, :]].mean(axis=(1, 2))
    a = (1 - conf) / 2
    return float(np.quantile(boot, a)), float(np.quantile(boot, 1 - a))


def accuracy_table(grades: pd.DataFrame, by: str) -> pd.DataFrame:
    """Per group: accuracy over seeds and items, its CI, and each seed's accuracy."""
    rows = []
    for g, d in grades.groupby(by, sort=False):
        wide = d.pivot_table(index="seed", columns="id", values="correct", aggfunc="first").astype(float)
        lo, hi = seed_item_ci(wide.to_numpy())
        rows.append({by: g, "accuracy": float(wide.to_numpy().mean()), "acc_lo": lo, "acc_hi": hi,
                     "per_seed": " ".join(f"{v:.3f}" for v in wide.mean(axis=1)), "n_seeds": len(wide),
                     "n_items": wide.shape[1]})
    return pd.DataFrame(rows)


def _key(a: pd.DataFrame, dedup: bool = True) -> pd.DataFrame:
    return a[(a.key_kind == "key") & (a.dedup == dedup)]


def _nulls(a: pd.DataFrame, dedup: bool = True) -> pd.DataFrame:
    return a[(a.key_kind == "wrong key") & (a.dedup == dedup)]


# ---------------------------------------------------------------- E1


def e1_tables(res: E1Results, alpha: float) -> dict:
    a = res.audits
    la = math.log10(alpha)
    rows = []
    for (rho, mode), g in a.groupby(["rho", "mode"]):
        k, n = _key(g), _nulls(g)
        rows.append({"rho": rho, "mode": mode, "log10_p_median": k.log10_p.median(), "log10_p_max": k.log10_p.max(),
                     "significant_seeds": f"{int((k.log10_p < la).sum())}/{len(k)}",
                     "n_scored_median": k.n_scored.median(),
                     "wrong_keys_significant": f"{int((n.log10_p < la).sum())}/{len(n)}"})
    clean = a[a.rho == 0.0]
    nulls = []
    for dedup in (True, False):
        c = clean[clean.dedup == dedup]  # the clean student: every key is one it never saw
        p = 10 ** c.log10_p.to_numpy()
        nulls.append({"dedup": "on" if dedup else "off", "n_audits": len(p),
                      "fraction_below_alpha": float((c.log10_p < la).mean()),
                      "fraction_below_0.05": float((p < 0.05).mean()),
                      "ks_uniform_p": float(sps.kstest(p, "uniform").pvalue) if len(p) else float("nan"),
                      "median_log10_p": float(c.log10_p.median())})
    out = {"rho": pd.DataFrame(rows), "nulls": pd.DataFrame(nulls)}
    if res.key_nulls is not None:
        out["key_nulls"] = key_null_table(res.key_nulls, alpha)
    return out


def key_null_table(kn: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """Per mode and clean student: the share of random keys whose audit falls below each level, with
    the exact (Clopper-Pearson) 95% upper bound. A valid p-value puts at most `level` below `level`."""
    rows = []
    for (mode, seed), g in kn.groupby(["mode", "seed"]):
        row = {"mode": mode, "seed": seed, "keys": len(g)}
        for level in sorted({alpha, 1e-3, 1e-2, 0.05}):
            k = int((g.log10_p < math.log10(level)).sum())
            upper = float(sps.beta.ppf(0.975, k + 1, len(g) - k)) if k < len(g) else 1.0
            row[f"below {level:g}"] = f"{k} ({k / len(g):.2g}; <= {upper:.2g})"
        rows.append(row)
    return pd.DataFrame(rows)


def e1_figures(out: Path, res: E1Results, alpha: float) -> None:
    a = res.audits
    modes = list(dict.fromkeys(a["mode"]))
    fig, axes = plt.subplots(1, len(modes) + 1, figsize=(4.6 * (len(modes) + 1), 3.8), squeeze=False)
    for ax, mode in zip(axes[0], modes):
        g = a[a["mode"] == mode]
        k = _key(g)
        ax.scatter(k.rho, k.log10_p, s=18, label="student (key), one point per seed")
        med = k.groupby("rho").log10_p.median()
        ax.plot(med.index, med.values, lw=1.5)
        n = _nulls(g).groupby("rho").log10_p
        ax.fill_between(n.min().index, n.min().values, n.max().values, color="grey", alpha=0.3,
                        label="wrong keys (null), min-max")
        ax.axhline(math.log10(alpha), color="r", ls=":", lw=0.8, label=f"alpha = {alpha:g}")
        ax.set_xlabel("protected fraction rho of the student's data")
        ax.set_ylabel("audit log10 p")
        ax.set_title(f"E1: {mode} mode", fontsize=9)
        ax.legend(fontsize=7)
    ax = axes[0][-1]
    clean = a[a.rho == 0.0]
    for dedup, style in ((True, "-"), (False, "--")):
        p = np.sort(10 ** clean[clean.dedup == dedup].log10_p.to_numpy())
        if len(p):
            q = (np.arange(1, len(p) + 1) - 0.5) / len(p)
            ax.plot(q, p, style, label=f"dedup {'on' if dedup else 'off'} ({len(p)} audits)")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.6, ls=":")
    ax.set_xlabel("uniform quantile")
    ax.set_ylabel("p-value of a clean student (any key)")
    ax.set_title("E1: clean students, p-value QQ", fontsize=9)
    ax.legend(fontsize=7)
    _save(fig, out / "e1_rho.png")


# ---------------------------------------------------------------- E2


def e2_tables(res: E2Results, alpha: float) -> dict:
    a, g = res.audits, res.grades
    la = math.log10(alpha)
    acc = g.groupby(["protection", "steps"]).correct.mean().rename("accuracy").reset_index()
    k = _key(a)[["protection", "mode", "steps", "log10_p", "n_scored"]]
    n = _nulls(a).groupby(["protection", "mode", "steps"]).log10_p.min().rename("wrong_key_min_log10_p").reset_index()
    table = k.merge(n, on=["protection", "mode", "steps"]).merge(acc, on=["protection", "steps"])
    fades = []
    for (spec, mode), t in table.groupby(["protection", "mode"], sort=False):
        t = t.sort_values("steps")
        learned = bool(t.iloc[0].log10_p < la)
        gone = t[t.log10_p >= la]
        fades.append({"protection": spec, "mode": mode, "learned (0 steps)": learned,
                      "log10_p at 0 steps": t.iloc[0].log10_p,
                      "not significant after steps": int(gone.steps.iloc[0]) if learned and len(gone) else None,
                      "steps tried": " ".join(map(str, t.steps))})
    return {"finetune": table.sort_values(["protection", "mode", "steps"]), "fades": pd.DataFrame(fades)}


def e2_figures(out: Path, table: pd.DataFrame, alpha: float) -> None:
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    for (spec, mode), t in table.groupby(["protection", "mode"], sort=False):
        t = t.sort_values("steps")
        ax.plot(t.steps, t.log10_p, marker="o", label=f"{spec.split(':')[0]}, {mode}")
    ax.axhline(math.log10(alpha), color="r", ls=":", lw=0.8, label=f"alpha = {alpha:g}")
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xlim(left=0)
    ax.set_xlabel("steps of continued fine-tuning on clean data")
    ax.set_ylabel("audit log10 p (the key)")
    ax.set_title("E2: audit evidence against steps of clean fine-tuning", fontsize=9)
    ax.legend(fontsize=7)
    _save(fig, out / "e2_finetune.png")


# ---------------------------------------------------------------- E4


def e4_tables(res: E4Results, alpha: float) -> pd.DataFrame:
    a, g = res.audits, res.grades
    la = math.log10(alpha)
    acc = accuracy_table(g, "attack")
    rows = []
    for attack in dict.fromkeys(a["attack"]):
        row = {"attack": attack}
        for mode in ("reading", "generation"):
            k = _key(a[(a.attack == attack) & (a["mode"] == mode)])
            n = _nulls(a[(a.attack == attack) & (a["mode"] == mode)])
            if len(k):
                row[f"{mode}_log10_p"] = k.log10_p.median()
                row[f"{mode}_significant"] = f"{int((k.log10_p < la).sum())}/{len(k)}"
                row[f"{mode}_null_fp"] = f"{int((n.log10_p < la).sum())}/{len(n)}"
        rows.append(row)
    out = acc.merge(pd.DataFrame(rows), on="attack", how="outer")
    if res.sizes is not None:  # training records left after the attack, and what they are worth once weighted
        cols = [c for c in ("records", "effective_records") if c in res.sizes]
        sizes = res.sizes.groupby("attack", sort=False)[cols].mean().round().astype(int).reset_index()
        out = out.merge(sizes, on="attack", how="outer")
    order = {a: i for i, a in enumerate(dict.fromkeys(list(res.sizes.attack if res.sizes is not None else [])
                                                      + list(a["attack"])))}
    return out.sort_values("attack", key=lambda s: s.map(order)).reset_index(drop=True)


def won_back_table(denying: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per capability-denying protection and adaptive attack: the student's accuracy (CI over seeds
    and items) and the share of the lost transfer it wins back, w = (attacked - protected) /
    (raw - protected), with a paired bootstrap CI (the same seeds and test items resampled for all
    three students) and w per seed. w = 0: the attack gains nothing; 1: the protection is undone."""
    g = denying
    wide = {k: d.pivot_table(index="seed", columns="id", values="correct", aggfunc="first").astype(float)
            for k, d in g.groupby(["protection", "attack"], sort=False)}
    raw = wide.get(("none", "none"))
    rng = np.random.default_rng(seed)
    rows = []
    for (spec, attack), m in wide.items():
        lo, hi = seed_item_ci(m.to_numpy(), n_boot=n_boot, seed=seed)
        row = {"protection": spec, "attack": attack, "accuracy": float(m.to_numpy().mean()), "acc_lo": lo,
               "acc_hi": hi, "per_seed": " ".join(f"{v:.3f}" for v in m.mean(axis=1)),
               **{c: int(round(g[(g.protection == spec) & (g.attack == attack)].groupby("seed")[c].first().mean()))
                  for c in ("records", "effective_records") if c in g}}
        prot = wide.get((spec, "none"))
        if spec != "none" and attack != "none" and raw is not None and prot is not None:
            seeds = sorted(set(m.index) & set(prot.index) & set(raw.index))
            items = sorted(set(m.columns) & set(prot.columns) & set(raw.columns))
            a, p, r = (x.loc[seeds, items].to_numpy() for x in (m, prot, raw))
            lost = r.mean() - p.mean()
            row["won_back"] = (a.mean() - p.mean()) / lost if lost > 0 else np.nan
            si = rng.integers(0, len(seeds), size=(n_boot, len(seeds)))
            ii = rng.integers(0, len(items), size=(n_boot, len(items)))
            boot = [x[si[:, :, None], ii[:, None, :]].mean(axis=(1, 2)) for x in (a, p, r)]
            with np.errstate(divide="ignore", invalid="ignore"):
                w = (boot[0] - boot[1]) / (boot[2] - boot[1])
            w = w[np.isfinite(w) & (boot[2] > boot[1])]  # replicates where the protection took nothing away have no share
            row["won_back_lo"], row["won_back_hi"] = ((float(np.quantile(w, 0.025)), float(np.quantile(w, 0.975)))
                                                      if len(w) else (np.nan, np.nan))
            per = [(a[i].mean() - p[i].mean()) / (r[i].mean() - p[i].mean()) if r[i].mean() > p[i].mean() else np.nan
                   for i in range(len(seeds))]
            row["won_back_per_seed"] = " ".join(f"{v:.2f}" for v in per)
            row["gains_in_every_seed"] = bool(all(a[i].mean() > p[i].mean() for i in range(len(seeds))))
        rows.append(row)
    return pd.DataFrame(rows)


def _worth(r) -> str:
    """', worth N equally weighted' where weights make the records worth fewer."""
    eff = r.get("effective_records", np.nan)
    return f", worth {eff:.0f} equally weighted" if not pd.isna(eff) and eff < 0.99 * r.records else ""


def _won_back_words(t: pd.DataFrame) -> list[str]:
    out = []
    for _, r in t.dropna(subset=["won_back"]).iterrows() if "won_back" in t else []:
        base = t[(t.protection == r.protection) & (t.attack == "none")].iloc[0]
        every = "in every seed" if r.gains_in_every_seed else "not in every seed"
        out.append(f"- **{r.attack}** against **{r.protection}**: student accuracy {r.accuracy:.1%} "
                   f"[{r.acc_lo:.1%}, {r.acc_hi:.1%}] vs {base.accuracy:.1%} unattacked ({r.records:.0f} of "
                   f"{base.records:.0f} records kept{_worth(r)}); wins back {r.won_back:.2f} [{r.won_back_lo:.2f}, "
                   f"{r.won_back_hi:.2f}] of the lost transfer (per seed {r.won_back_per_seed}); the student gains "
                   f"{every}.")
    return out


def e4_figures(out: Path, table: pd.DataFrame, alpha: float) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11.0, 4.4))
    for ax, mode in zip(axes, ("reading", "generation")):
        col = f"{mode}_log10_p"
        t = table.dropna(subset=[col, "accuracy"]) if col in table else table.iloc[:0]
        for i, (_, r) in enumerate(t.iterrows()):
            ax.errorbar(r.accuracy, -r[col], xerr=[[r.accuracy - r.acc_lo], [r.acc_hi - r.accuracy]], fmt="o",
                        capsize=3)
            label = r.attack.split(":")[0] + (" (rank)" if "weights=rank" in r.attack else "")
            ax.annotate(label, (r.accuracy, -r[col]), fontsize=7, xytext=(4, 3 if i % 2 else -10),
                        textcoords="offset points")  # alternate above and below: neighbours overlap less
        ax.axhline(-math.log10(alpha), color="r", ls=":", lw=0.8, label=f"alpha = {alpha:g}")
        ax.set_xlabel("attacker's capability: student accuracy (CI over seeds and items)")
        ax.set_ylabel("auditor's evidence: -log10 p (median over seeds)")
        ax.set_title(f"E4: attacks, {mode} mode", fontsize=9)
        ax.legend(fontsize=7)
    _save(fig, out / "e4_attacks.png")


# ---------------------------------------------------------------- words and files


def _csv(out: Path, name: str, df: pd.DataFrame) -> None:
    with atomic_write(out / name) as fh:
        df.to_csv(fh, index=False)


def _e4_words(t: pd.DataFrame) -> list[str]:
    if "none" not in set(t.attack):
        return []
    base = t[t.attack == "none"].iloc[0]
    out = []
    for _, r in t.iterrows():
        if r.attack == "none":
            continue
        parts = []
        if not pd.isna(r.get("accuracy")):
            parts.append(f"student accuracy {r.accuracy:.1%} [{r.acc_lo:.1%}, {r.acc_hi:.1%}] vs "
                         f"{base.accuracy:.1%} without the attack" + (f" ({r.records:.0f} records{_worth(r)})"
                                                                     if not pd.isna(r.get("records")) else ""))
        for mode in ("reading", "generation"):
            if not pd.isna(r.get(f"{mode}_log10_p", np.nan)):
                parts.append(f"{mode} log10 p {r[f'{mode}_log10_p']:.1f} vs {base[f'{mode}_log10_p']:.1f} "
                             f"(significant in {r[f'{mode}_significant']} seeds)")
        if pd.isna(r.get("accuracy")):
            parts.insert(0, "no training record survived the attack, so no student" if r.get("records") == 0
                         else "the student is unchanged (a decoding attack), so is its accuracy")
        out.append(f"- **{r.attack}**: " + "; ".join(parts) + ".")
    return out


def _header(cfg: dict, meta: dict, alpha: float) -> list[str]:
    md = [f"# antidistill evidence: {cfg['name']}", "",
          f"Teacher `{meta['teacher']}`; student seeds {cfg['seeds']}; students `{cfg['run']['students']['preset']}`, "
          f"{cfg['run']['students']['max_steps']} steps on {cfg['run']['corpus']['n_prompts']} prompts; "
          f"{cfg['run']['eval']['n_test']} test items; {cfg['run']['eval']['audit_texts']} audit texts; "
          f"{cfg['run']['eval']['wrong_keys']} wrong keys per audit; alpha = {alpha:g}; key fingerprint "
          f"`{meta['key_fingerprint']}`. Wall time {meta['wall_seconds']:.0f} s (per finding: "
          + ", ".join(f"{k.upper()} {v:.0f} s" for k, v in meta.get("finding_seconds", {}).items())
          + f"; stages computed this time: {sum(e['status'] == 'computed' for e in meta['stages'])}, cached: "
          f"{sum(e['status'] == 'cached' for e in meta['stages'])}"
          + f"; machine: {meta['machine']['cpus']} CPUs, {meta['machine']['torch_threads']} torch threads)"
          + ("" if set(meta.get("findings_done", ["e1", "e2", "e4"])) >= {"e1", "e2", "e4"} else
             f". **Partial: only {', '.join(f.upper() for f in meta['findings_done'])} finished so far.**") + ".", ""]
    card = meta.get("teacher_card") or {}
    if card.get("accuracy"):
        md += ["Demo teacher (greedy, held-out test split, n = {}): {}.".format(
            card.get("n_test"), ", ".join(f"{k} {v:.1%}" for k, v in card["accuracy"].items())), ""]
    return md


def _e1_section(out: Path, cfg: dict, res: EvidenceResults, alpha: float) -> list[str]:
    """E1: evidence against the protected fraction, and the nulls."""
    if res.e1 is None:
        return []
    md: list[str] = []
    t = e1_tables(res.e1, alpha)
    _csv(out, "e1_rho.csv", t["rho"])
    _csv(out, "e1_nulls.csv", t["nulls"])
    _csv(out, "e1_audits.csv", res.e1.audits)
    e1_figures(out, res.e1, alpha)
    md += ["## E1: evidence against the protected fraction rho (Sander et al. 2024)", "",
           f"Students trained on a mix: a fraction rho of the records from the `{cfg['e1']['protection']}` "
           "corpus, the rest from the raw teacher. Audit with the key (median over seeds) and with wrong keys.",
           "", "![E1](e1_rho.png)", "", md_table(t["rho"]), "",
           "Clean students (rho = 0) audited with the key and every wrong key: with dedup the p-values should be "
           "uniform; without dedup repeated tuples count again and again.", "", md_table(t["nulls"]), ""]
    if "key_nulls" in t:
        _csv(out, "e1_key_nulls.csv", t["key_nulls"])  # the summary; 10,000 rows per student stay in the cache
        md += ["The guarantee is over the key: one fixed wrong key's p-values cluster over students that share "
               "most of their tuples (so a KS test over (student, key) audits overstates any departure), while "
               f"over random keys a clean student's p-value must put at most a share `level` below `level`. Each "
               f"clean student audited (dedup on) with {int(t['key_nulls']['keys'].max())} random keys; count below "
               "each level (share; exact 95% upper bound):", "", md_table(t["key_nulls"]), ""]
    return md


def _e2_section(out: Path, cfg: dict, res: EvidenceResults, alpha: float) -> list[str]:
    """E2: a learned watermark under clean fine-tuning."""
    if res.e2 is None:
        return []
    md: list[str] = []
    t = e2_tables(res.e2, alpha)
    _csv(out, "e2_finetune.csv", t["finetune"])
    _csv(out, "e2_fades.csv", t["fades"])
    e2_figures(out, t["finetune"], alpha)
    md += ["## E2: does a learned watermark fade with clean fine-tuning? (Gu et al. 2024)", "",
           f"The seed-{cfg['seeds'][0]} student of each scheme, fine-tuned further on "
           f"{cfg['e2']['clean_records']} clean task-suite traces (lr {cfg['e2']['lr']:g}).", "",
           "![E2](e2_finetune.png)", "", md_table(t["fades"]), "", md_table(t["finetune"]), ""]
    return md


def _e4_section(out: Path, cfg: dict, res: EvidenceResults, alpha: float) -> list[str]:
    """E4: each attack's student beside the audit, and what an adaptive attacker wins back."""
    if res.e4 is None:
        return []
    md: list[str] = []
    t = e4_tables(res.e4, alpha)
    _csv(out, "e4_attacks.csv", t)
    _csv(out, "e4_audits.csv", res.e4.audits)
    _csv(out, "e4_items.csv", res.e4.grades)
    e4_figures(out, t, alpha)
    g = res.e4.grades
    skills = g.pivot_table(index="attack", columns="skill", values="correct", aggfunc="mean", sort=False)
    skills = skills.reset_index()
    _csv(out, "e4_skills.csv", skills)
    md += ["## E4: the attacker's capability beside the auditor's evidence (Pan et al. 2025; DistillGuard 2026)",
           "", f"Each attack applied to the `{cfg['e4']['protection']}` corpus (corpus attacks: a student per "
           "seed) or to the decoding of its student (decode attacks: generation mode only). `none (raw teacher)`"
           " is the null control: a student of the unprotected teacher, audited with the key.", "",
           "![E4](e4_attacks.png)", "", md_table(t), "", *_e4_words(t), "",
           "Student accuracy per skill (mean over seeds):", "", md_table(skills), ""]
    sizes = res.e4.sizes
    same = sorted(set(sizes[sizes.same_as_source].attack) - {"none"}) if "same_as_source" in sizes else []
    if same:
        md += ["Attacks that left the corpus unchanged (so their student is the unattacked one): "
               + ", ".join(same) + ".", ""]
    if res.e4.denying is not None:
        w = won_back_table(res.e4.denying)
        _csv(out, "e4_won_back.csv", w)
        _csv(out, "e4_won_back_items.csv", res.e4.denying)
        md += ["### What an adaptive attacker wins back against capability-denying protections", "",
               "The protection's own corpus attacked by the distiller (keep only traces whose answer it can "
               "recompute; or weight each trace by how its loss moves along the hold-out gradient of the "
               "unattacked student, after the distillation-game paper), a student per seed. Won back: "
               "(attacked - protected) / (raw - protected), paired bootstrap over seeds and test items.", "",
               md_table(w), "", *_won_back_words(w), ""]
    return md


def write_evidence(out: Path, cfg: dict, res: EvidenceResults, meta: dict) -> Path:
    out = Path(out)
    ensure_out_dir(out)
    alpha = float(cfg["run"]["alpha"])
    write_config_and_meta(out, cfg, meta)
    md = _header(cfg, meta, alpha) + _e1_section(out, cfg, res, alpha) + _e2_section(out, cfg, res, alpha) \
        + _e4_section(out, cfg, res, alpha)
    with atomic_write(out / "report.md") as fh:
        fh.write("\n".join(md) + "\n")
    return out / "report.md"
