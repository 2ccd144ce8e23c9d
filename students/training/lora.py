"""LoRA specs (`r=16,alpha=32[,dropout=0.05][,targets=q_proj+v_proj]`), parsed by the project's spec
parser, and the `peft.LoraConfig` a student gets from them."""
from __future__ import annotations

from antidistill.watermark.errors import UserError
from antidistill.watermark.spec import Param, parse_params

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
LORA_PARAMS = (
    Param("r", int, 16, lambda v: v > 0, "a positive integer"),
    Param("alpha", float, 32.0, lambda v: 0 < v <= 1e4, "0 < alpha <= 1e4"),
    Param("dropout", float, 0.0, lambda v: 0 <= v < 1, "0 <= dropout < 1"),
    Param("targets", str, "+".join(LORA_TARGETS)),
)


def parse_lora(spec: str | None) -> dict | None:
    """LoRA settings {r, alpha, dropout, targets} of a spec (None: full fine-tuning); the dict is what
    a training plan records."""
    if spec is None:
        return None
    values = {p.name: p.default for p in LORA_PARAMS} | parse_params("--lora", LORA_PARAMS, spec)
    return {"r": values["r"], "alpha": float(values["alpha"]), "dropout": float(values["dropout"]),
            "targets": [t for t in values["targets"].split("+") if t]}


def lora_config(settings: dict, model, student: str):
    """The `peft.LoraConfig` of `settings` for `model`, its targets narrowed to the modules it has."""
    from peft import LoraConfig  # heavy; full fine-tuning never needs it

    present = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    targets = [t for t in settings["targets"] if t in present]
    if not targets:
        raise UserError(f"--lora targets {'+'.join(settings['targets'])} match no module of {student!r}")
    return LoraConfig(r=settings["r"], lora_alpha=settings["alpha"], lora_dropout=settings["dropout"],
                      target_modules=targets, task_type="CAUSAL_LM")
