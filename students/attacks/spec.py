"""Attack specs: one string per attack, parsed once, validated, printed back canonically.

    canonicalize                      dilute:rho=0.5
    answer-only                       filter:by=recompute,k=3
    paraphrase:model=smollm2,...      reweight:eps=0.001,beta=1,holdout=64
    dedup:threshold=0.8,num_perm=128,shingle=3
    finetune:steps=100,lr=0.0003,batch_size=16
    decode:temperature=1,top_p=0.9    neutralize:strength=4,h=1,min_count=2,margin=0.5

Each attack acts at one `stage`: `corpus` (the collected texts, before training), `student` (the
trained weights) or `decode` (how the suspect is sampled when the auditor queries it). The
parameter machinery is the protection specs' (`antidistill.watermark.spec.Param`), so both kinds of
spec read and fail the same way.
"""
from __future__ import annotations

from typing import Any, ClassVar

from antidistill.watermark.errors import UserError
from antidistill.watermark.spec import Param, parse_params

from ..models.loader import check_model

STAGES = ("corpus", "student", "decode")
_REGISTRY: dict[str, type["Attack"]] = {}


def register(cls: type["Attack"]) -> type["Attack"]:
    _REGISTRY[cls.name] = cls
    return cls


class Attack:
    """Owns one parsed attack: its name, the stage it acts at (corpus, student or decode), its parameter
    values and canonical spec string. Each subclass declares these and its one-line description in
    `doc` (what `describe` and the CLI help print), which is why the subclasses carry no docstring."""

    name: ClassVar[str]
    stage: ClassVar[str]
    params: ClassVar[tuple[Param, ...]] = ()
    doc: ClassVar[str] = ""

    def __init__(self, **values: Any):
        for p in self.params:
            setattr(self, p.name, values.get(p.name, p.default))

    @property
    def spec(self) -> str:
        if not self.params:
            return self.name
        return f"{self.name}:" + ",".join(f"{p.name}={p.format(getattr(self, p.name))}" for p in self.params
                                          if not (p.optional and getattr(self, p.name) == p.default))

    def __str__(self) -> str:
        return self.spec

    def __repr__(self) -> str:
        return f"Attack({self.spec!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Attack) and other.spec == self.spec

    def __hash__(self) -> int:
        return hash(self.spec)

    def validate(self) -> None:
        """Checks beyond single parameters' ranges (e.g. that a named model exists)."""


# Upper ends of the attacks' sizes: beyond them a spec is a typo that would fail (or run for days) only
# when its stage is reached, so it is refused when parsed, with its range.
MAX_STEPS = 1_000_000  # fine-tuning steps
MAX_BATCH = 4096
MAX_TOKENS = 4096  # tokens per generated completion, or per shingle
MAX_SAMPLES = 64  # samples per prompt for a majority vote
MAX_RECORDS = 1_000_000  # records or samples an attack draws


def _upto(hi: int):
    return lambda v: 1 <= v <= hi


@register
class Canonicalize(Attack):
    name, stage = "canonicalize", "corpus"
    doc = "rewrite every demo trace into one fixed phrasing per step (numbers kept as written)"


@register
class AnswerOnly(Attack):
    name, stage = "answer-only", "corpus"
    doc = "drop the chain of thought: keep only the final answer line of each trace"


@register
class Paraphrase(Attack):
    name, stage = "paraphrase", "corpus"
    doc = "rewrite every completion with a language model (smollm2: the packaged SmolLM2-135M-Instruct)"
    params = (Param("model", str, "smollm2"),
              Param("temperature", float, 0.7, lambda v: 0 <= v <= 100, "0 <= temperature <= 100; 0 is greedy"),
              Param("max_new_tokens", int, 256, _upto(MAX_TOKENS), f"1 <= max_new_tokens <= {MAX_TOKENS}"),
              Param("batch_size", int, 8, _upto(MAX_BATCH), f"1 <= batch_size <= {MAX_BATCH}"))

    def validate(self) -> None:
        check_model(self.model, "paraphrase: model")  # resolvable offline, before any stage starts


@register
class Dilute(Attack):
    name, stage = "dilute", "corpus"
    doc = "replace a fraction rho of the records by clean records from another source"
    params = (Param("rho", float, 0.5, lambda v: 0 <= v <= 1, "0 <= rho <= 1"),)


@register
class Filter(Attack):
    name, stage = "filter", "corpus"
    doc = "keep only traces whose final answer checks: recomputed from the prompt, or the majority of k samples"
    params = (Param("by", str, "recompute", choices=("recompute", "majority")),
              Param("k", int, 3, lambda v: 2 <= v <= MAX_SAMPLES, f"2 <= k <= {MAX_SAMPLES}"))


@register
class Reweight(Attack):
    name, stage = "reweight", "corpus"
    doc = ("weight each trace by the finite-difference directional derivative of its loss along the "
           "student's hold-out gradient (adaptive student)")
    # weights: "score" is exp(beta z) of the derivative's z-score; "rank" replaces z by the normal
    # score of its rank, so heavy-tailed derivatives cannot put the weight on a handful of traces
    # (effective sample size about n exp(-beta^2)); optional: older specs keep their printed form.
    params = (Param("eps", float, 1e-3, lambda v: 0 < v <= 1, "0 < eps <= 1"),
              Param("beta", float, 1.0, lambda v: 0 <= v <= 100, "0 <= beta <= 100; 0 gives equal weights"),
              Param("holdout", int, 64, _upto(MAX_RECORDS), f"1 <= holdout <= {MAX_RECORDS}"),
              Param("weights", str, "score", choices=("score", "rank"), optional=True))


@register
class Dedup(Attack):
    name, stage = "dedup", "corpus"
    doc = "drop near-duplicate traces: MinHash LSH candidates confirmed by exact Jaccard of token shingles"
    params = (Param("threshold", float, 0.8, lambda v: 0 < v <= 1, "0 < threshold <= 1"),
              Param("num_perm", int, 128, lambda v: 16 <= v <= 4096, "16 <= num_perm <= 4096"),
              Param("shingle", int, 3, _upto(MAX_TOKENS), f"1 <= shingle <= {MAX_TOKENS}"))


@register
class Finetune(Attack):
    name, stage = "finetune", "student"
    doc = "continue training the student on clean data for a number of steps"
    params = (Param("steps", int, 100, lambda v: 0 <= v <= MAX_STEPS, f"0 <= steps <= {MAX_STEPS}"),
              Param("lr", float, 3e-4, lambda v: 0 < v <= 1, "0 < lr <= 1"),
              Param("batch_size", int, 16, _upto(MAX_BATCH), f"1 <= batch_size <= {MAX_BATCH}"))


@register
class Decode(Attack):
    name, stage = "decode", "decode"
    doc = "answer the auditor's queries with other sampling settings"
    params = (Param("temperature", float, 1.0, lambda v: 0 <= v <= 100, "0 <= temperature <= 100; 0 is greedy"),
              Param("top_p", float, 1.0, lambda v: 0 < v <= 1, "0 < top_p <= 1"))


@register
class Neutralize(Attack):
    name, stage = "neutralize", "decode"
    doc = ("estimate the (context, token) tuples the student over-uses against a clean reference model "
           "and subtract a bias from them when decoding")
    # strength is a logit bias, bounded like kgw's delta; margin a log-ratio of frequencies
    params = (Param("strength", float, 4.0, lambda v: 0 <= v <= 100, "0 <= strength <= 100"),
              Param("h", int, 1, lambda v: v in (0, 1), "0 or 1"),
              Param("min_count", int, 2, _upto(MAX_RECORDS), f"1 <= min_count <= {MAX_RECORDS}"),
              Param("margin", float, 0.5, lambda v: 0 <= v <= 100, "0 <= margin <= 100"),
              Param("samples", int, 256, _upto(MAX_RECORDS), f"1 <= samples <= {MAX_RECORDS}"))


def parse_attack(spec: "str | Attack") -> Attack:
    """Parse and validate an attack spec; errors list the valid choices."""
    if isinstance(spec, Attack):
        return spec
    if not isinstance(spec, str):
        raise UserError(f"an attack spec must be a string, got {spec!r}; valid attacks: {', '.join(sorted(_REGISTRY))}")
    if not spec.strip():
        raise UserError(f"empty attack spec; valid attacks: {', '.join(sorted(_REGISTRY))}")
    name, _, body = spec.strip().partition(":")
    name = name.strip().lower()
    cls = _REGISTRY.get(name)
    if cls is None:
        raise UserError(f"unknown attack {name!r}; valid attacks: {', '.join(sorted(_REGISTRY))}")
    values = parse_params(name, cls.params, body)
    attack = cls(**values)
    attack.validate()
    return attack


def parse_attacks(specs) -> list[Attack]:
    """A run config's `attacks` list, parsed in order; corpus attacks must precede student and decode
    attacks (they apply in that order) and no spec may repeat."""
    if isinstance(specs, str) or not isinstance(specs, (list, tuple)):
        raise UserError(f"attacks must be a list of specs, e.g. [\"canonicalize\", \"dilute:rho=0.5\"], got {specs!r}")
    out = [parse_attack(s) for s in specs]
    order = [STAGES.index(a.stage) for a in out]
    if order != sorted(order):
        raise UserError("attacks: list corpus attacks first, then student attacks, then decode attacks "
                        f"(got {', '.join(a.spec for a in out)})")
    if len({a.spec for a in out}) != len(out):
        raise UserError(f"attacks listed twice: {[a.spec for a in out]}")
    return out


def known_attacks() -> list[str]:
    return sorted(_REGISTRY)


def describe() -> str:
    """One line per attack: canonical default spec, stage, what it does (for --help and README)."""
    return "\n".join(f"{cls().spec:60s} [{cls.stage}] {cls.doc}" for _, cls in sorted(_REGISTRY.items()))
