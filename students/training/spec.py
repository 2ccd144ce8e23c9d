"""`TrainingSpec`: one distillation run's settings, validated once, and the plan that binds its folder."""
from __future__ import annotations

from dataclasses import dataclass

from antidistill.watermark.errors import UserError

from ..batching import MODES
from ..models.presets import split_preset
from .lora import parse_lora


def default_lr(from_scratch: bool, lora: dict | None) -> float:
    """Learning rates that work for these short runs: high from scratch, low for full fine-tuning."""
    if lora:
        return 2e-3
    return 3e-3 if from_scratch else 3e-4


@dataclass(frozen=True)
class TrainingSpec:
    """Owns what a distillation run is: the student (preset, 'demo', folder or hub id), its corpus and
    optional mixed-in corpus with the fraction `mix`, the loss (`mode`), LoRA settings (parsed from a
    spec string; None: full fine-tuning), the schedule, the seed, and how it reports and saves. Invalid
    values are refused at construction, before anything is loaded."""

    student: str
    corpus: object
    mix_corpus: object = None
    mix: float | None = None
    mode: str = "sft"
    lora: str | dict | None = None
    epochs: float = 1.0
    max_steps: int | None = None
    lr: float | None = None
    batch_size: int = 16
    seed: int = 0
    save_steps: int = 200
    retokenize: bool | None = None  # None: when the corpus's tokenizer is not the student's
    logging_steps: int = 10
    # batches of similar lengths in random order (batching.LengthGroupedOrder): less padding, but on
    # a task whose skills differ in length a batch holds one skill (on the demo suite that cost the
    # raw student most of what it learns in 2000 steps); False: the Trainer's random batches
    group_by_length: bool = False

    def __post_init__(self):
        if self.mode not in MODES:
            raise UserError(f"unknown --mode {self.mode!r}; valid modes: {', '.join(MODES)}")
        if self.mode == "logit-kd" and self.retokenize:
            raise UserError("--retokenize works only with --mode sft: stored top-k ids belong to the teacher's "
                            "vocabulary")
        lora = parse_lora(self.lora) if isinstance(self.lora, (str, type(None))) else dict(self.lora)
        object.__setattr__(self, "lora", lora)
        for name, value in (("epochs", self.epochs), ("batch-size", self.batch_size), ("save-steps", self.save_steps)):
            if not value > 0:
                raise UserError(f"--{name} must be positive, got {value}")
        if not (self.epochs <= 1000 and (self.max_steps is None
                                         or (isinstance(self.max_steps, int) and self.max_steps > 0))):
            raise UserError(f"--epochs must lie in (0, 1000] and --max-steps be a positive integer, got "
                            f"{self.epochs}, {self.max_steps}")
        if not isinstance(self.group_by_length, bool):
            raise UserError(f"group_by_length must be true or false, got {self.group_by_length!r}")
        if self.lr is not None and not 0 < self.lr <= 1:
            raise UserError(f"--lr must be a finite number with 0 < lr <= 1, got {self.lr}")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else default_lr(split_preset(self.student) is not None, self.lora)

    def plan(self, main, other) -> dict:
        """What binds an output folder (a rerun with another plan is refused): the settings and a
        summary of the corpora read."""
        return {"student": self.student, "corpus": _corpus_summary(main),
                "mix_corpus": _corpus_summary(other) if other else None, "mix": self.mix, "mode": self.mode,
                "lora": self.lora, "epochs": self.epochs, "max_steps": self.max_steps, "lr": self.learning_rate,
                "batch_size": self.batch_size, "seed": self.seed, "retokenize": self.retokenize,
                **({"group_by_length": True} if self.group_by_length else {})}


def _corpus_summary(c) -> dict:
    m = c.manifest
    return {"path": str(c.path), "teacher": m.get("teacher"), "protection": m.get("protection"),
            "key_fingerprint": m.get("key_fingerprint"), "records": len(c),
            "tokenizer_fingerprint": m.get("tokenizer_fingerprint")}
