"""`antidistill evidence`: the published findings about attacks, reproduced on the demo bench.

- E1 (Sander et al. 2024): audit log10 p against the protected fraction rho of the student's data;
  clean students give uniform p-values (many keys); without dedup clean students look radioactive.
- E2 (Gu et al. 2024): students distilled on KGW and Gumbel samples learn the watermark; continued
  fine-tuning on clean data fades it (after how many steps, per scheme).
- E4 (Pan et al. 2025; DistillGuard 2026): per attack, the attacker's capability (student accuracy,
  CIs over seeds and items) beside the auditor's evidence (log10 p, reading and generation modes,
  nulls): rewriting weakens detection and barely hurts the student; removing the chain of thought
  hurts the student far more.

The teacher, corpora and grading come from the experiment runner (same cache: a student trained on
an unattacked corpus with the runner's settings is the runner's student); attacked corpora,
students, fine-tuned students and audits are cached beside them, keyed by their inputs.
"""
from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

import pandas as pd

from antidistill.students.cache import check_out_dir
from antidistill.watermark import parse_protection
from antidistill.watermark.errors import UserError

from .presets import DEFAULT, MAX_SEEDS, RULES, _merge, check_config
from .runner import Runner, _finetune, _train, public_config

KGW = "kgw:gamma=0.25,delta=2,h=1,hash=left"
GUMBEL = "gumbel:h=1"

ADS = "ads:lam=3"  # the frontier's strongest capability-denying point (DE 0.56 in results/frontier)

EVIDENCE = {
    "name": "evidence",
    # Overrides of the runner's default config. Everything else is the default preset's recipe (teacher,
    # 20,000 prompts, 2000-step students at batch 32, lr 4e-3), so the raw, KGW and ADS corpora and students
    # are the default and frontier runs' own (same cache keys).
    "run": _merge(DEFAULT, {"alpha": 1e-4, "teacher": {"model": "demo", "demo": {}},
                            "protections": ["none", KGW, GUMBEL, ADS],
                            "students": {"seeds": 1},  # the seeds are this config's `seeds`
                            "eval": {"n_test": 400, "audit_texts": 256, "wrong_keys": 20}}),
    "seeds": [0, 1, 2],  # student seeds (init and data order); corpora are shared
    # null_keys: each clean (rho = 0) student also audited with this many random keys (seconds per 10,000)
    "e1": {"protection": KGW, "rhos": [0.0, 0.1, 0.5, 1.0], "modes": ["reading", "generation"], "null_keys": 10000},
    # steps: separate fine-tunes of the seed-0 student, each from its distilled weights
    "e2": {"protections": [KGW, GUMBEL], "steps": [0, 100, 400, 1600], "clean_records": 20000, "lr": 3e-4},
    "e4": {"protection": KGW, "corpus_attacks": ["canonicalize", "dedup:threshold=0.8,num_perm=128,shingle=3",
                                                 "filter:by=recompute,k=3", "dilute:rho=0.5",
                                                 "reweight:eps=0.001,beta=1,holdout=64",
                                                 "reweight:eps=0.001,beta=1,holdout=64,weights=rank", "answer-only"],
           "decode_attacks": ["decode:temperature=1,top_p=0.9", "neutralize:strength=4,h=1,min_count=2,margin=0.5"],
           # The adaptive attacker against capability-denying protections: how much of the transfer the
           # protection took away (raw student minus protected student) the attack wins back.
           "denying": {"protections": [ADS],
                       # weights=rank added after the first run showed the score weights collapse (NOTES.md)
                       "attacks": ["filter:by=recompute,k=3", "reweight:eps=0.001,beta=1,holdout=64",
                                   "reweight:eps=0.001,beta=1,holdout=64,weights=rank"]}},
    "clean_seed": 777,  # the attacker's clean data: task-suite traces drawn with this seed
}

EVIDENCE_SMOKE = _merge(EVIDENCE, {
    "name": "evidence-smoke",
    "run": {"alpha": 1e-3,
            "teacher": {"model": "demo", "demo": {"preset": "tiny", "n_train": 2000, "steps": 120, "batch_size": 16,
                                                  "n_test": 24, "max_new_tokens": 64}},
            "protections": ["none", "kgw:gamma=0.25,delta=4,h=1,hash=left", GUMBEL, "temperature:t=2"],
            "corpus": {"n_prompts": 96, "max_new_tokens": 64, "batch_size": 48},
            "students": {"max_steps": 30, "batch_size": 16},
            "eval": {"n_test": 16, "max_new_tokens": 64, "audit_texts": 24, "wrong_keys": 5}},
    "seeds": [0, 1],
    "e1": {"protection": "kgw:gamma=0.25,delta=4,h=1,hash=left", "rhos": [0.0, 0.5, 1.0], "modes": ["reading"],
           "null_keys": 200},
    "e2": {"protections": ["kgw:gamma=0.25,delta=4,h=1,hash=left", GUMBEL], "steps": [0, 10], "clean_records": 64},
    "e4": {"protection": "kgw:gamma=0.25,delta=4,h=1,hash=left",
           "corpus_attacks": ["canonicalize", "filter:by=recompute,k=3", "reweight:eps=0.001,beta=1,holdout=8",
                              "answer-only"],
           "decode_attacks": ["neutralize:strength=4,h=1,min_count=2,margin=0.5,samples=16"],
           "denying": {"protections": ["temperature:t=2"],
                       "attacks": ["filter:by=recompute,k=3", "reweight:eps=0.001,beta=1,holdout=8",
                                   "reweight:eps=0.001,beta=1,holdout=8,weights=rank"]}},
})

PRESETS = {"evidence": EVIDENCE, "evidence-smoke": EVIDENCE_SMOKE}


def evidence_config(preset: str = "evidence", overrides: dict | None = None) -> dict:
    """The resolved evidence config; `run` holds a full runner config (the runner's default merged
    with the preset's overrides)."""
    if preset not in PRESETS:
        raise UserError(f"unknown evidence preset {preset!r}; valid presets: {', '.join(PRESETS)}")
    cfg = _merge(PRESETS[preset], overrides or {})
    cfg["run"] = _merge(DEFAULT, cfg["run"], "run.")
    cfg["run"]["name"] = cfg["name"]
    check_config(cfg["run"])
    specs = cfg["run"]["protections"]
    denying = cfg["e4"].get("denying") or {"protections": [], "attacks": []}
    for where, v in [("e2.protections", cfg["e2"]["protections"]), ("e4.corpus_attacks", cfg["e4"]["corpus_attacks"]),
                     ("e4.decode_attacks", cfg["e4"]["decode_attacks"]),
                     ("e4.denying.protections", denying.get("protections")),
                     ("e4.denying.attacks", denying.get("attacks"))]:
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise UserError(f"{where}: a list of spec strings, got {v!r}")
    for where, spec in ([("e1.protection", cfg["e1"]["protection"]), ("e4.protection", cfg["e4"]["protection"])]
                        + [("e2.protections", s) for s in cfg["e2"]["protections"]]
                        + [("e4.denying.protections", s) for s in denying["protections"]]):
        if parse_protection(spec).spec not in [parse_protection(s).spec for s in specs]:
            raise UserError(f"{where}: {spec} is not among run.protections ({', '.join(specs)})")
    seeds = cfg["seeds"]
    if not isinstance(seeds, list) or not seeds:
        raise UserError("seeds: list at least one student seed")
    if not all(_whole(s) and s <= RULES["seed"][1] for s in seeds) or len(set(seeds)) < len(seeds):
        raise UserError(f"seeds: distinct whole numbers in 0 <= x <= {RULES['seed'][1]}, got {seeds}")
    if len(seeds) > MAX_SEEDS:
        raise UserError(f"seeds: at most {MAX_SEEDS} student seeds (each a full set of trainings), got {len(seeds)}")
    from antidistill.students.attacks import parse_attacks

    parse_attacks(cfg["e4"]["corpus_attacks"] + cfg["e4"]["decode_attacks"])
    for a in parse_attacks(denying["attacks"]):
        if a.stage != "corpus":
            raise UserError(f"e4.denying.attacks: {a.spec} acts on the {a.stage}; list corpus attacks here")
    from antidistill.students.attacks.spec import MAX_STEPS

    if not isinstance(cfg["e2"]["steps"], list) or not all(_whole(x) and x <= MAX_STEPS for x in cfg["e2"]["steps"]):
        raise UserError(f"e2.steps: every entry must be a whole number of fine-tuning steps in 0 <= x <= {MAX_STEPS}, "
                        f"got {cfg['e2']['steps']}")
    nk = cfg["e1"].get("null_keys", 0)
    if not _whole(nk):
        raise UserError(f"e1.null_keys: a whole number of random keys >= 0 (0: none), got {nk!r}")
    if not isinstance(cfg["e1"]["rhos"], list) or not cfg["e1"]["rhos"]:
        raise UserError(f"e1.rhos: a list of protected fractions in [0, 1], got {cfg['e1']['rhos']!r}")
    for r in cfg["e1"]["rhos"]:
        if not isinstance(r, (int, float)) or isinstance(r, bool) or not 0 <= r <= 1:  # nan fails the range too
            raise UserError(f"e1.rhos: {r!r} is not a number in [0, 1]")
    return cfg


def _whole(x) -> bool:
    """A whole number >= 0 (a count of seeds, steps or keys; True is not one)."""
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _say(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


class Evidence:
    def __init__(self, cfg: dict, out, cache_dir=None, quiet: bool = False):
        self.cfg = cfg
        self.out = Path(out)
        check_out_dir(self.out)  # an --out that is a file, before the cache or any stage is touched
        self.quiet = quiet
        self.cache_dir = cache_dir
        self.runner = Runner(copy.deepcopy(cfg["run"]), self.out, cache_dir=cache_dir, quiet=quiet)
        self.r = self.runner
        self.prot = {p.spec: p for p in self.r.protections}
        # While planning, student() and finetuned() list the trainings they would run instead of
        # running them, and the findings skip their measurements; prepare() then runs the list on
        # `students.workers` processes and plans again (reweight needs its first-pass students first).
        self._plan: list | None = None

    # ------------------------------------------------------------ data
    def tokenizer(self):
        return self.r.teacher()[1]

    def clean(self) -> list[dict]:
        """The attacker's clean records (task-suite traces, never touched by the key): enough for E2's
        fine-tuning and for diluting a whole corpus."""
        n = max(self.cfg["e2"]["clean_records"], self.cfg["run"]["corpus"]["n_prompts"])
        return self.r.clean(n, self.cfg["clean_seed"])

    def clean_corpus(self) -> Path:
        n = self.cfg["e2"]["clean_records"]
        return self.r.clean_corpus(seed=self.cfg["clean_seed"], records=self.clean()[:n])

    def mixed_corpus(self, spec: str, rho: float) -> Path:
        """E1: a fraction rho of the training records from the protected corpus, the rest raw."""
        from antidistill.students.attacks import write_corpus
        from antidistill.students.corpus import read_corpus
        from antidistill.students.training.distill import mix_records

        if rho == 1.0:
            return self.r.corpus(self.prot[spec], "train")
        if rho == 0.0:
            return self.r.corpus(self.prot["none"], "train")
        raw_dir, marked_dir = (self.r.corpus(self.prot[s], "train") for s in ("none", spec))
        inputs = {"raw": raw_dir.name, "marked": marked_dir.name, "rho": rho, "seed": self.r.seed}

        def build(tmp: Path):
            raw, marked = read_corpus(raw_dir), read_corpus(marked_dir)
            recs = mix_records(raw.records, marked.records, rho, self.r.seed)
            write_corpus(recs, tmp, source_manifest={**marked.manifest, "mix_rho": rho}, attacks=[])

        return self.r._artifact("attacks", f"{spec} at rho={rho:g}", "mixed-corpora", inputs, build)

    def attacked_corpus(self, spec: str, attack: str, seed: int) -> Path | None:
        """spec's training corpus after one corpus attack; None while planning if the attack needs a
        first-pass student not yet trained. An attack that only drops records (filter, dedup) and drops
        none returns the source corpus itself, so the unattacked student is reused, not retrained."""
        from antidistill.students.attacks import apply_corpus_attack, parse_attack, write_corpus
        from antidistill.students.corpus import read_corpus, read_manifest
        from antidistill.students.models.loader import load_model

        a = parse_attack(attack)
        source = self.r.corpus(self.prot[spec], "train")
        # Only reweighting depends on the student seed (its gradient is the seed's first-pass student's).
        first = self.student(source, seed) if a.name == "reweight" else None
        if first is not None and not (first / "model" / "config.json").is_file():
            return None  # planned: the first pass trains, then the next planning round builds this
        inputs = {"corpus": source.name, "attack": a.spec, "seed": seed if first else self.r.seed,
                  "first_pass": first.name if first else None, "clean_seed": self.cfg["clean_seed"]}

        def build(tmp: Path):
            src = read_corpus(source)
            student = load_model(str(first / "model"), cache_dir=self.cache_dir) if first else None
            recs = apply_corpus_attack(a, src.records, tokenizer=self.tokenizer(), clean=self.clean(),
                                       student=student, seed=self.r.seed)
            write_corpus(recs, tmp, source_manifest=src.manifest, attacks=[a])

        out = self.r._artifact("attacks", f"{a.spec} on {spec}", "attacked-corpora", inputs, build)
        n = read_manifest(source)["counts"]["records"]
        if a.name in ("filter", "dedup") and read_manifest(out)["counts"]["records"] == n:
            return source
        return out

    # ------------------------------------------------------------ students
    def student(self, corpus: Path, seed: int) -> Path:
        """A student trained with the runner's recipe (the runner's own cache entry and arguments)."""
        target, _, job = self.r.student_job(None, seed, corpus)
        item = f"{corpus.name[:8]} seed {seed}"
        if job is None:
            if self._plan is None:
                self.r.log.add("students", item, "cached", 0.0)
        elif self._plan is not None:
            self._plan.append((item, _train, job))
        else:
            self.r.train_many([(item, _train, job)])
        return target

    def finetuned(self, student_dir: Path, steps: int, seed: int) -> Path:
        if steps == 0:
            return student_dir
        e2 = self.cfg["e2"]
        spec = f"finetune:steps={steps},lr={e2.get('lr', 3e-4)},batch_size={self.cfg['run']['students']['batch_size']}"
        clean = self.clean_corpus()
        target = self.r._dir("students", {"finetune_of": student_dir.name, "attack": spec, "clean": clean.name,
                                          "seed": seed})
        if self._plan is not None and not (student_dir / "model" / "config.json").is_file():
            return target  # planned once the student it continues is trained (the next round)
        if not (target / "model" / "config.json").is_file():
            job = dict(spec=spec, student_dir=str(student_dir), out=str(target), clean_corpus=str(clean), seed=seed,
                       cache_dir=self.cache_dir)
            item = f"{spec} of {student_dir.name[:8]}"
            if self._plan is not None:
                self._plan.append((item, _finetune, job))
            else:
                self.r.train_many([(item, _finetune, job)])
        return target

    def prepare(self) -> None:
        """Every corpus, student and fine-tune the findings need, built before any is measured: the
        trainings run `students.workers` at a time, in rounds (a reweight corpus needs its first-pass
        student, so its own student comes a round later)."""
        from tqdm.auto import tqdm

        jobs = [(self.prot[s], "train") for s in self._specs_used()]
        jobs += [(self.prot[s], "audit") for s in self._audited_specs()]
        with tqdm(total=len(jobs), desc="[evidence] corpora", unit="corpus", disable=self.quiet, file=sys.stderr,
                  dynamic_ncols=True) as bar:
            self.r.corpora(jobs, bar)
        for round_ in range(1, 4):
            self._plan = []
            try:
                for name in ("e4", "e2", "e1"):
                    getattr(self, name)()
            finally:
                planned, self._plan = self._plan, None
            if not planned:
                return
            todo = list({job["out"]: (item, fn, job) for item, fn, job in planned}.values())
            with tqdm(total=len(todo), desc=f"[evidence] training, round {round_}", unit="student",
                      disable=self.quiet, file=sys.stderr, dynamic_ncols=True) as bar:
                self.r.train_many(todo, bar)
        raise AssertionError("trainings still planned after three rounds")

    def _specs_used(self) -> list[str]:
        d = self.cfg["e4"].get("denying") or {"protections": []}
        specs = ["none", self.cfg["e1"]["protection"], self.cfg["e4"]["protection"], *self.cfg["e2"]["protections"],
                 *d["protections"]]
        return list(dict.fromkeys(parse_protection(x).spec for x in specs))

    def _audited_specs(self) -> list[str]:
        specs = [self.cfg["e1"]["protection"], self.cfg["e4"]["protection"], *self.cfg["e2"]["protections"]]
        return list(dict.fromkeys(parse_protection(x).spec for x in specs))

    # ------------------------------------------------------------ measurements
    def grades(self, label: str, student_dir: Path, seed: int) -> pd.DataFrame:
        return self.r.grades(label, student_dir, seed)

    def _audit_inputs(self, spec: str, student_dir: Path, mode: str, decode: str | None) -> dict:
        e = self.cfg["run"]["eval"]
        return {"student": student_dir.name, "texts": self.r.corpus(self.prot[spec], "audit").name, "protection": spec,
                "mode": mode, "key": self.r.key.fingerprint, "decode": decode, "selection": e["audit_selection"],
                "temperature": e["audit_temperature"], "choice_filter": e["choice_filter"],
                "max_new_tokens": self.cfg["run"]["corpus"]["max_new_tokens"], "seed": self.r.seed}

    def _tuples(self, spec: str, student_dir: Path, mode: str, decode: str | None):
        """The student's audit tuples on spec's audit texts and the choice-point mask (the runner's)."""
        from antidistill.students.models.loader import load_model

        model, tok = load_model(str(student_dir / "model"), cache_dir=self.cache_dir)
        return self.r.audit_tuples(self.prot[spec], model, tok, mode, [decode] if decode else [])

    def audit(self, spec: str, student_dir: Path, mode: str, decode: str | None = None) -> pd.DataFrame:
        """The student audited with the key and the runner's wrong keys, deduplicated and not."""
        from ..measures.audit import score, wrong_keys

        prot = self.prot[spec]
        e = self.cfg["run"]["eval"]
        inputs = {**self._audit_inputs(spec, student_dir, mode, decode), "wrong_keys": e["wrong_keys"], "v": 1}

        def build(tmp: Path):
            import warnings

            tuples, keep = self._tuples(spec, student_dir, mode, decode)
            rows = []
            for kind, key in [("key", self.r.key)] + [("wrong key", k) for k in wrong_keys(e["wrong_keys"])]:
                for dedup in (True, False):
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")  # dedup off is measured on purpose (E1)
                        r = score(prot.detector(key), tuples, mode=mode, keep=keep, dedup=dedup)
                    rows.append({"key_kind": kind, "key_fingerprint": key.fingerprint,
                                 **{k: v for k, v in r.detection.as_dict().items() if k != "key_fingerprint"}})
            pd.DataFrame(rows).to_csv(tmp / "audit.csv", index=False)

        label = f"audit {student_dir.name[:8]} {spec.split(':')[0]} {mode}" + (f" {decode}" if decode else "")
        d = self.r._artifact("evaluations", label, "evidence-audits", inputs, build)
        return pd.read_csv(d / "audit.csv").assign(protection=spec, mode=mode, decode=decode or "none")

    def key_null(self, spec: str, student_dir: Path, mode: str, n_keys: int) -> pd.DataFrame:
        """A clean student's deduplicated audit p-value under n_keys random keys (the same tuples):
        what the guarantee is about. A fixed wrong key's p-values cluster over students that share
        tuples; over keys they must be uniform (at most alpha below alpha)."""
        from antidistill.watermark import Key

        from ..measures.audit import score

        prot = self.prot[spec]
        inputs = {**self._audit_inputs(spec, student_dir, mode, None), "null_keys": n_keys, "v": 1}

        def build(tmp: Path):
            tuples, keep = self._tuples(spec, student_dir, mode, None)
            lp = [score(prot.detector(Key.from_text(f"antidistill/key-null/{i}")), tuples, mode=mode, keep=keep)
                  .detection.log10_p for i in range(n_keys)]
            pd.DataFrame({"key_index": range(n_keys), "log10_p": lp}).to_csv(tmp / "key_null.csv", index=False)

        label = f"key null {student_dir.name[:8]} {spec.split(':')[0]} {mode} ({n_keys} keys)"
        d = self.r._artifact("evaluations", label, "evidence-key-nulls", inputs, build)
        return pd.read_csv(d / "key_null.csv").assign(protection=spec, mode=mode)

    # ------------------------------------------------------------ the three findings
    # Each finding asks for its students and then measures them; while planning (self._plan is a
    # list) it only asks, so prepare() learns every training before any measurement starts.
    def e1(self) -> dict | None:
        c = self.cfg["e1"]
        grades, audits, nulls = [], [], []
        for rho in c["rhos"]:
            corpus = self.mixed_corpus(c["protection"], rho)
            for seed in self.cfg["seeds"]:
                sdir = self.student(corpus, seed)
                if self._plan is not None:
                    continue
                grades.append(self.grades(f"rho={rho:g}/seed={seed}", sdir, seed).assign(rho=rho))
                for mode in c["modes"]:
                    audits.append(self.audit(c["protection"], sdir, mode).assign(rho=rho, seed=seed))
                    if rho == 0 and c.get("null_keys", 0):
                        nulls.append(self.key_null(c["protection"], sdir, mode, c["null_keys"]).assign(seed=seed))
        if self._plan is not None:
            return None
        out = {"grades": pd.concat(grades, ignore_index=True), "audits": pd.concat(audits, ignore_index=True)}
        if nulls:
            out["key_nulls"] = pd.concat(nulls, ignore_index=True)
        return out

    def e2(self) -> dict | None:
        c = self.cfg["e2"]
        grades, audits = [], []
        seed = self.cfg["seeds"][0]
        for spec in c["protections"]:
            base = self.student(self.r.corpus(self.prot[spec], "train"), seed)
            for steps in c["steps"]:
                sdir = self.finetuned(base, steps, seed)
                if self._plan is not None:
                    continue
                grades.append(self.grades(f"{spec}+ft{steps}", sdir, seed).assign(protection=spec, steps=steps))
                for mode in ("reading", "generation"):
                    audits.append(self.audit(spec, sdir, mode).assign(steps=steps))
        if self._plan is not None:
            return None
        return {"grades": pd.concat(grades, ignore_index=True), "audits": pd.concat(audits, ignore_index=True)}

    def e4(self) -> dict | None:
        from antidistill.students.corpus import read_manifest

        c = self.cfg["e4"]
        spec = c["protection"]
        planning = self._plan is not None
        grades, audits, sizes, denied = [], [], [], []
        base_corpus = self.r.corpus(self.prot[spec], "train")
        raw_corpus = self.r.corpus(self.prot["none"], "train")
        for seed in self.cfg["seeds"]:
            rows = [("none (raw teacher)", raw_corpus), ("none", base_corpus)]
            rows += [(a, self.attacked_corpus(spec, a, seed)) for a in c["corpus_attacks"]]
            for attack, corpus in rows:
                if corpus is None:  # planning: its first-pass student is not trained yet
                    continue
                n = read_manifest(corpus)["counts"]["records"]
                if not planning:  # (effective sizes read the whole corpus)
                    sizes.append({"attack": attack, "seed": seed, "records": n, "same_as_source": corpus == base_corpus,
                                  "effective_records": _effective_records(corpus, n)})
                if n == 0:  # e.g. nothing verifies: no student to train, reported as such
                    continue
                sdir = self.student(corpus, seed)
                if planning:
                    continue
                grades.append(self.grades(f"{attack}/seed={seed}", sdir, seed).assign(attack=attack))
                for mode in ("reading", "generation"):
                    audits.append(self.audit(spec, sdir, mode).assign(attack=attack, seed=seed))
            base = self.student(base_corpus, seed)
            if not planning:
                for attack in c["decode_attacks"]:
                    audits.append(self.audit(spec, base, "generation", decode=attack).assign(attack=attack, seed=seed))
            denied += self._denying(seed, raw_corpus)
        if planning:
            return None
        out = {"grades": pd.concat(grades, ignore_index=True), "audits": pd.concat(audits, ignore_index=True),
               "sizes": pd.DataFrame(sizes)}
        if denied:
            out["denying"] = pd.concat(denied, ignore_index=True)
        return out

    def _denying(self, seed: int, raw_corpus: Path) -> list[pd.DataFrame]:
        """Grades of the raw student, each capability-denying protection's student, and that
        protection's corpus after each adaptive attack (one seed)."""
        from antidistill.students.corpus import read_manifest

        d = self.cfg["e4"].get("denying") or {"protections": [], "attacks": []}
        out = []
        if d["protections"]:
            raw = self.student(raw_corpus, seed)
            if self._plan is None:
                n = read_manifest(raw_corpus)["counts"]["records"]
                out.append(self.grades(f"none (raw teacher)/seed={seed}", raw, seed)
                           .assign(protection="none", attack="none", records=n, effective_records=float(n)))
        for spec in d["protections"]:
            spec = parse_protection(spec).spec
            source = self.r.corpus(self.prot[spec], "train")
            for attack, corpus in [("none", source)] + [(a, self.attacked_corpus(spec, a, seed)) for a in d["attacks"]]:
                if corpus is None:
                    continue
                n = read_manifest(corpus)["counts"]["records"]
                if n == 0:
                    continue
                sdir = self.student(corpus, seed)
                if self._plan is None:
                    out.append(self.grades(f"{spec}+{attack}/seed={seed}", sdir, seed)
                               .assign(protection=spec, attack=attack, records=n,
                                       effective_records=_effective_records(corpus, n)))
        return out

    def run(self) -> dict:
        from antidistill.watermark.errors import output_lock

        with output_lock(self.out, "results folder"):
            return self._run()

    def _run(self) -> dict:
        from .evidence_report import write_evidence

        t0 = time.perf_counter()
        _say(f"[evidence] teacher {self.r.teacher_id()}, seeds {self.cfg['seeds']}", self.quiet)
        self.r.teacher()
        _say("[evidence] corpora and students", self.quiet)
        t = time.perf_counter()
        self.prepare()
        seconds = {"training": round(time.perf_counter() - t, 1)}
        res = {}
        # The report is rewritten after each finding, so a run cut short keeps what it found.
        for name in ("e4", "e2", "e1"):
            _say(f"[evidence] {name.upper()}", self.quiet)
            t = time.perf_counter()
            res[name] = getattr(self, name)()
            seconds[name] = round(time.perf_counter() - t, 1)
            meta = self.r.meta(time.perf_counter() - t0)
            meta["finding_seconds"] = seconds
            meta["findings_done"] = list(res)
            public = public_config(self.cfg["run"], self.r.key, self.r.key_source)
            write_evidence(self.out, {**self.cfg, "run": public}, res, meta)
        return {"results": res, "meta": meta, "out": self.out, "log": self.r.log}


def _effective_records(corpus: Path, n: int) -> float:
    """How many equally weighted traces a corpus is worth: n, or Kish's effective size when its
    records carry reweighting weights."""
    from antidistill.students.attacks.reweight import effective_size
    from antidistill.students.corpus import read_corpus, read_manifest

    if not any(a.startswith("reweight") for a in read_manifest(corpus).get("attacks", [])):
        return float(n)
    return effective_size([r.get("weight", 1.0) for r in read_corpus(corpus).records])


def run_evidence(cfg: dict, out, cache_dir=None, quiet: bool = False) -> dict:
    return Evidence(cfg, out, cache_dir=cache_dir, quiet=quiet).run()
