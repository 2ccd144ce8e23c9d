"""Protection specs: one string everywhere (CLI, configs, reports), parsed once and validated.

    none
    kgw:gamma=0.25,delta=2,h=1,hash=left
    unigram:gamma=0.5,delta=2
    gumbel:h=2
    synthid:depth=16,h=4
    temperature:t=1.5
    trace:keep=answer
    poe:gamma=0.3,proxy=distilled
    ads:lam=1,eps=0.01,proxy=distilled
    doge:beta=3,proxy=distilled

`parse_protection` returns a `Protection`; `str(protection)` / `.spec` prints it back canonically
(every parameter, declared order), so equal protections have equal specs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

from .errors import UserError

_REGISTRY: dict[str, type["Protection"]] = {}


@dataclass(frozen=True)
class Param:
    name: str
    kind: type  # int, float or str
    default: Any
    check: Callable[[Any], bool] = lambda v: True
    rule: str = ""  # what `check` demands, for the error message
    choices: tuple[str, ...] = ()
    optional: bool = False  # left out of the canonical spec at its default (added after specs were in use)

    def parse(self, scheme: str, raw: str) -> Any:
        if self.choices:
            if raw not in self.choices:
                raise UserError(f"{scheme}: {self.name}={raw!r} is not one of {', '.join(self.choices)}")
            return raw
        try:
            value = self.kind(raw)
            if self.kind is int and str(value) != raw.lstrip("+"):
                raise ValueError
        except ValueError:
            raise UserError(f"{scheme}: {self.name}={raw!r} is not a valid {self.kind.__name__}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"{scheme}: {self.name} must be finite")
        if not self.check(value):
            raise UserError(f"{scheme}: {self.name}={raw} is out of range ({self.rule})")
        return value

    def format(self, value: Any) -> str:
        return f"{value:g}" if isinstance(value, float) else str(value)


def register(cls: type["Protection"]) -> type["Protection"]:
    _REGISTRY[cls.scheme] = cls
    return cls


class Protection:
    """A named output countermeasure with validated parameters.

    Subclasses declare `scheme` and `params`, build their sampling-time `processor` and, when the
    protection leaves a detectable trace, a `detector`. Protections without a detector (e.g.
    temperature, antidistillation sampling) set `has_detector = False`; protections that need a
    second model at sampling time receive it through `processor(..., **resources)`.
    """

    scheme: ClassVar[str]
    params: ClassVar[tuple[Param, ...]] = ()
    has_detector: ClassVar[bool] = False
    needs_key: ClassVar[bool] = False
    # Where it acts, for students/ to wire it: "logits" (its `processor` at sampling time),
    # "teacher" (a defended teacher, built and cached, then sampled plainly) or "text" (a transform
    # of the finished traces).
    acts_on: ClassVar[str] = "logits"
    # Models `processor` needs beside the teacher (keyword resources), and the forward passes of
    # them it adds per generated token (the legitimate user's compute cost).
    resources: ClassVar[tuple[str, ...]] = ()
    extra_forwards: ClassVar[int] = 0

    def __init__(self, **values: Any):
        for p in self.params:
            setattr(self, p.name, values.get(p.name, p.default))

    @property
    def spec(self) -> str:
        if not self.params:
            return self.scheme
        body = ",".join(f"{p.name}={p.format(getattr(self, p.name))}" for p in self.params
                        if not (p.optional and getattr(self, p.name) == p.default))
        return f"{self.scheme}:{body}"

    def __str__(self) -> str:
        return self.spec

    def __repr__(self) -> str:
        return f"Protection({self.spec!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Protection) and other.spec == self.spec

    def __hash__(self) -> int:
        return hash(self.spec)

    def validate(self) -> None:
        """Cross-parameter checks; single parameters are already checked by `Param.check`."""

    def processor(self, key, vocab_size: int, **resources):
        """A `transformers.LogitsProcessor` applying the protection, or None when it changes nothing.

        `resources` holds the sampling settings of `generate` (temperature, top_k, top_p) and the
        models named in `resources`.
        """
        return None

    def detector(self, key):
        raise UserError(f"protection {self.scheme!r} has no detector; detectable schemes: "
                        f"{', '.join(s for s, c in sorted(_REGISTRY.items()) if c.has_detector)}")


class KeyedProtection(Protection):
    """A token-hash watermark: keyed, detectable, over windows of `h` context tokens.

    Subclasses name their `processor_class` (given the sampling settings of `generate`:
    temperature, top_k, top_p) and `detector_class`.
    """

    has_detector = True
    needs_key = True
    processor_class: ClassVar[type]
    detector_class: ClassVar[type]

    @property
    def context_width(self) -> int:
        return self.h

    @property
    def hash_label(self) -> str:
        """Domain separation for the key: schemes sharing a key draw independent hashes."""
        return self.scheme

    def processor(self, key, vocab_size: int, **sampling):
        return self.processor_class(self, key, vocab_size, **sampling)

    def detector(self, key):
        return self.detector_class(self, key)


def parse_params(owner: str, params, body: str) -> dict[str, Any]:
    """`name=value,...` of a spec, each parsed by its declared `Param` (shared by protection and
    attack specs); errors name the owner and list the valid parameters."""
    declared = {p.name: p for p in params}
    values: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in body.split(","))):
        name, eq, raw = item.partition("=")
        name, raw = name.strip(), raw.strip()
        if not eq or not raw:
            raise UserError(f"{owner}: parameter {item!r} must look like name=value")
        if name not in declared:
            valid = ", ".join(declared) if declared else "none"
            raise UserError(f"{owner}: unknown parameter {name!r}; valid parameters: {valid}")
        if name in values:
            raise UserError(f"{owner}: parameter {name!r} given twice")
        values[name] = declared[name].parse(owner, raw)
    return values


def parse_protection(spec: "str | Protection") -> Protection:
    """Parse and validate a protection spec; errors list the valid choices."""
    if isinstance(spec, Protection):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise UserError(f"empty protection spec; valid schemes: {', '.join(sorted(_REGISTRY))}")
    scheme, _, body = spec.strip().partition(":")
    scheme = scheme.strip().lower()
    cls = _REGISTRY.get(scheme)
    if cls is None:
        raise UserError(f"unknown protection scheme {scheme!r}; valid schemes: {', '.join(sorted(_REGISTRY))}")
    values = parse_params(scheme, cls.params, body)
    protection = cls(**values)
    protection.validate()
    return protection


def known_schemes() -> list[str]:
    return sorted(_REGISTRY)


@register
class NoProtection(Protection):
    """The raw teacher: outputs untouched (the baseline every protection is compared with)."""

    scheme = "none"
