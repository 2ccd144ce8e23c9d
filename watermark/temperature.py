"""Temperature: the plain frontier every capability-denying countermeasure must beat.

Sampling hotter makes traces noisier for a distiller and costs the legitimate user accuracy; a
countermeasure is worth its cost only if, at matched teacher accuracy, its students learn less
than temperature's. The processor divides the logits by `t` before `generate`'s own temperature,
so a corpus sampled at `--temperature 1` (the default) is sampled at exactly `t`.
"""
from __future__ import annotations

from transformers import TemperatureLogitsWarper

from .spec import Param, Protection, register


@register
class Temperature(Protection):
    scheme = "temperature"
    params = (Param("t", float, 1.0, lambda v: 0.0 < v <= 100.0, "0 < t <= 100"),)

    def processor(self, key, vocab_size: int, **resources):
        return TemperatureLogitsWarper(self.t)
