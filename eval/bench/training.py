"""Student training roofline: how far a CPU training step is from the machine's matmul rate, and where the rest goes.

    python -m antidistill.eval.bench.training [--shapes tiny,mini] [--steps 30] [--warmup 5]
        [--batch-size 32] [--threads T] [--note TEXT] [--out results/bench]

Issue 21. Per student shape (a `students.models.presets` Llama with the project tokenizer, fresh
weights, float32), at the default student batch (32) on real demo-suite sequences (the suite's
reference traces as corpus records, `attacks.apply.clean_records`, encoded as distillation encodes
a corpus: `record_features`, right-padded per batch by the project's `Collator`):

1. matmul rate: every GEMM of one training step at this batch and the mean padded width -- each
   linear layer forward (tokens x in x out), its input gradient and its weight gradient, the
   attention score and value products (batched per head) -- each shape timed alone with
   `torch.matmul` on float32 (median of repeats), on the same torch threads. The rate is the step's
   GEMM FLOPs / the sum of their times: what the step would run at if it were nothing but its GEMMs.
2. step FLOPs, counted (see `step_flops`): 6 * P * tokens + 12 * layers * hidden * sum(width^2),
   P = the parameters that multiply activations (attention and MLP projections, and the lm_head,
   counted although tied to the embedding; the embedding lookup and the norms are not matmuls).
   "executed": every position of the padded [batch, width] tensor; "useful": the non-pad tokens.
3. bare loop: model(**batch) with labels (the model's own loss over the vocabulary), backward,
   AdamW step, zero_grad, collation included; steps/s and achieved (executed) FLOP/s.
4. Trainer: the project's own `DistillTrainer` built by `students.training.distill` exactly as a
   student is trained (as the experiment runner asks: save_steps 10000, logging_steps 100), on the
   same features; steps/s timed between step ends after the warm-up, and its ratio to the bare loop.
5. components, ms per step: collation, forward, backward and optimizer (the bare loop's own
   phases), the loss over the vocabulary alone (lm_head + the model's cross-entropy, forward and
   backward, on the same batch shape), gradient clipping (the Trainer's max_grad_norm 1.0), one
   checkpoint (model `save_pretrained` + optimizer state) divided by save_steps 200 (the `train`
   command's default), one Trainer log call divided by logging_steps 10 (the `train` default),
   and the padding share with random batches and with batches of sorted lengths.

Writes OUT/training.csv (one row per shape) and OUT/training.md (the tables, the command, the machine,
a reading). Timings are of the machine as it was: other load changes them (the load average is noted).
"""
from __future__ import annotations

import os
import random
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from antidistill.watermark.errors import UserError, atomic_write

from ..cli import Parser
from ..cli.options import POSITIVE, integer
from ..core.jobs import exit_with_parent, library_chatter

SHAPES = ("tiny", "mini")  # the default; any `PRESETS` name is accepted
BATCH = 32  # the experiment's default student batch (StudentsSection.batch_size)
RECORDS = 320  # demo-suite reference traces: 10 batches of 32
SAVE_STEPS = 200  # `antidistill train` default (TrainingSpec.save_steps)
LOG_STEPS = 10  # `antidistill train` default (TrainingSpec.logging_steps)
RUNNER_SAVE_STEPS, RUNNER_LOG_STEPS = 10_000, 100  # what the experiment runner asks (Lab.student_job)

COLUMNS = ("shape", "params", "matmul_params", "batch", "width", "tokens_executed", "tokens_useful",
           "padding_share", "padding_share_sorted", "gflop_step", "matmul_gflops", "matmul_peak_gflops",
           "matmul_ms", "bare_steps_s", "bare_gflops", "bare_useful_gflops", "pct_of_matmul",
           "trainer_steps_s", "trainer_bare_ratio", "trainer_tokens_executed", "collate_ms", "forward_ms",
           "backward_ms", "optimizer_ms", "loss_ms", "clip_ms", "save_ms", "log_ms", "save_s", "threads")


def log(msg: str) -> None:
    print(f"[bench training {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ counting
def linear_shapes(cfg) -> list[tuple[str, int, int, int]]:
    """(name, in, out, how many) of every linear map of a Llama config, the lm_head included."""
    h, i, n_layers, vocab = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers, cfg.vocab_size
    head_dim = getattr(cfg, "head_dim", None) or h // cfg.num_attention_heads
    q = cfg.num_attention_heads * head_dim
    kv = (getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads) * head_dim
    return [("q", h, q, n_layers), ("k", h, kv, n_layers), ("v", h, kv, n_layers), ("o", q, h, n_layers),
            ("gate", h, i, n_layers), ("up", h, i, n_layers), ("down", i, h, n_layers), ("lm_head", h, vocab, 1)]


def matmul_params(cfg) -> int:
    """Parameters that multiply activations (the P of 6PT): projections and the lm_head."""
    return sum(a * b * n for _, a, b, n in linear_shapes(cfg))


def step_flops(cfg, lengths) -> float:
    """Forward + backward FLOPs of one step on sequences of `lengths` (pass the padded width for
    every row to count what runs, the true lengths to count what is useful):

        6 * P * sum(s) + 12 * layers * d_attn * sum(s^2)

    A linear map costs 2 FLOPs per weight per token forward and 4 backward (input and weight
    gradients): 6 P per token. Attention per layer and sequence: Q K^T and (softmax) V are each
    2 * s^2 * d_attn forward (d_attn = heads * head_dim), twice that backward: 12 * d_attn * s^2.
    The full s x s matrix is counted (the kernels compute it under a padding mask). Norms, softmax,
    activations, the embedding lookup and the optimizer are not counted (O(P + s * d), small beside these)."""
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    d_attn = cfg.num_attention_heads * head_dim
    lengths = [int(s) for s in lengths]
    return float(6 * matmul_params(cfg) * sum(lengths) + 12 * cfg.num_hidden_layers * d_attn * sum(s * s for s in lengths))


def gemm_set(cfg, batch: int, width: int) -> list[tuple[str, tuple, tuple, int]]:
    """(label, shape of A, shape of B, times per step) of the GEMMs of one training step."""
    m = batch * width
    out = []
    for name, a, b, n in linear_shapes(cfg):
        out += [(f"{name} fwd", (m, a), (a, b), n), (f"{name} grad-in", (m, b), (b, a), n),
                (f"{name} grad-w", (b, m), (m, a), n)]
    heads = cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    bh, n_layers = batch * heads, cfg.num_hidden_layers
    # QK^T shape: forward scores and backward dS = dO V^T; PV shape: forward, dV, dQ, dK
    out += [("attn QK", (bh, width, head_dim), (bh, head_dim, width), 2 * n_layers),
            ("attn PV", (bh, width, width), (bh, width, head_dim), 4 * n_layers)]
    return out


def gemm_flops(a: tuple, b: tuple) -> float:
    batch = a[0] if len(a) == 3 else 1
    return 2.0 * batch * a[-2] * a[-1] * b[-1]


def padding(lengths: list[int], batch: int) -> tuple[int, int]:
    """(executed, useful) tokens of consecutive batches of `lengths`, each padded to its longest."""
    executed = sum(len(lengths[i:i + batch]) * max(lengths[i:i + batch]) for i in range(0, len(lengths), batch))
    return executed, sum(lengths)


# ------------------------------------------------------------------ timing
def _median_time(fn, repeats: int = 5, min_s: float = 0.01) -> float:
    """Median seconds per call of `fn` (calls grouped so that one sample lasts >= min_s)."""
    fn()
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-7)
    k = max(1, int(min_s / one))
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(k):
            fn()
        samples.append((time.perf_counter() - t0) / k)
    return statistics.median(samples)


def matmul_rate(cfg, batch: int, width: int, repeats: int) -> dict:
    """The step's GEMMs, each shape timed alone: rate = their FLOPs / their summed times."""
    import torch

    gen = torch.Generator().manual_seed(0)
    seen: dict[tuple, float] = {}
    flops = seconds = 0.0
    peak = 0.0
    for _, a, b, n in gemm_set(cfg, batch, width):
        if (a, b) not in seen:
            x, y = torch.randn(a, generator=gen), torch.randn(b, generator=gen)
            seen[(a, b)] = _median_time(lambda: torch.matmul(x, y), repeats)
            peak = max(peak, gemm_flops(a, b) / seen[(a, b)])
        flops += n * gemm_flops(a, b)
        seconds += n * seen[(a, b)]
    return {"matmul_gflops": flops / seconds / 1e9, "matmul_peak_gflops": peak / 1e9, "matmul_ms": 1e3 * seconds}


def demo_features(tokenizer, n: int = RECORDS) -> list[dict]:
    """Demo-suite reference traces encoded as distillation encodes a corpus."""
    from antidistill.students.attacks.apply import clean_records
    from antidistill.students.batching import record_features
    from antidistill.students.models.presets import MAX_POSITIONS

    return record_features(clean_records(n, tokenizer, seed=0), tokenizer, "sft", max_len=MAX_POSITIONS)


def shuffled_batches(feats: list[dict], batch: int, seed: int = 0) -> list[list[dict]]:
    order = list(range(len(feats)))
    random.Random(seed).shuffle(order)
    return [[feats[i] for i in order[s:s + batch]] for s in range(0, len(order) - batch + 1, batch)]


def bare_loop(model, batches, collator, warmup: int, steps: int, lr: float) -> tuple[dict, object, dict]:
    """(per-phase median seconds, the optimizer, totals) of the plain loop."""
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    model.train()
    phases = {"collate": [], "forward": [], "backward": [], "optimizer": []}
    executed = useful = 0
    t_start = None
    for k in range(warmup + steps):
        if k == warmup:
            t_start = time.perf_counter()
        t0 = time.perf_counter()
        inputs = collator(batches[k % len(batches)])
        t1 = time.perf_counter()
        loss = model(**inputs).loss
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        opt.step()
        opt.zero_grad(set_to_none=True)
        t4 = time.perf_counter()
        if k >= warmup:
            for name, dt in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                phases[name].append(dt)
            executed += inputs["input_ids"].numel()
            useful += int(inputs["attention_mask"].sum())
    seconds = time.perf_counter() - t_start
    return ({k: statistics.median(v) for k, v in phases.items()}, opt,
            {"seconds": seconds, "executed": executed, "useful": useful})


def trainer_loop(model, feats, tokenizer, shape: str, batch: int, warmup: int, steps: int, tmp: Path) -> tuple[float, float, object]:
    """(steps/s after the warm-up, mean executed tokens per step, the trainer) of the project's own Trainer."""
    from transformers import TrainerCallback

    from antidistill.students.batching import Collator
    from antidistill.students.training.distill import build_trainer
    from antidistill.students.training.spec import TrainingSpec

    class Counting(Collator):
        def __init__(self, pad_id):
            super().__init__(pad_id)
            self.executed = []

        def __call__(self, rows):
            out = super().__call__(rows)
            self.executed.append(out["input_ids"].numel())
            return out

    class Clock(TrainerCallback):
        def __init__(self):
            self.start, self.ends = None, []

        def on_train_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.ends.append(time.perf_counter())

    spec = TrainingSpec(shape, None, max_steps=warmup + steps, batch_size=batch, seed=0,
                        save_steps=RUNNER_SAVE_STEPS, logging_steps=RUNNER_LOG_STEPS)
    # The Trainer `train_student` builds, on a model and features built here.
    collator = Counting(tokenizer.pad_token_id)
    trainer = build_trainer(spec, model, feats, collator, tmp)
    clock = Clock()
    trainer.add_callback(clock)
    trainer.train()
    if len(clock.ends) != warmup + steps:
        raise RuntimeError(f"the Trainer ran {len(clock.ends)} steps, not {warmup + steps}")
    # without a warm-up the window opens at the start of training (the first step's overheads included)
    first = clock.ends[warmup - 1] if warmup else clock.start
    return steps / (clock.ends[-1] - first), statistics.fmean(collator.executed), trainer


def loss_time(model, inputs, repeats: int) -> float:
    """lm_head + the model's cross-entropy over the vocabulary, forward and backward, alone."""
    import torch

    b, w = inputs["input_ids"].shape
    weight = model.get_output_embeddings().weight.detach().clone().requires_grad_(True)
    hidden = torch.randn(b, w, weight.shape[1], requires_grad=True)
    labels = inputs["labels"]

    def step():
        logits = torch.nn.functional.linear(hidden, weight)
        loss = model.loss_function(logits=logits, labels=labels, vocab_size=weight.shape[0])
        loss.backward()
        hidden.grad = weight.grad = None

    return _median_time(step, repeats)


def save_time(model, opt, repeats: int) -> float:
    """One checkpoint: model `save_pretrained` and the optimizer state, as the Trainer writes both."""
    import torch

    samples = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            model.save_pretrained(tmp)
            torch.save(opt.state_dict(), os.path.join(tmp, "optimizer.pt"))
            samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def bench_shape(shape: str, batch: int, warmup: int, steps: int, repeats: int = 5) -> dict:
    import torch

    from antidistill.students.batching import Collator
    from antidistill.students.models.presets import build_model, count_parameters
    from antidistill.students.training.spec import default_lr

    model, tok = build_model(shape, seed=0)
    cfg = model.config
    feats = demo_features(tok)
    batches = shuffled_batches(feats, batch)
    if not batches:
        raise UserError(f"--batch-size {batch} is more than the {len(feats)} records of the bench corpus")
    lengths = [len(f["input_ids"]) for b in batches for f in b]
    executed, useful = padding(lengths, batch)
    executed_sorted, _ = padding(sorted(lengths), batch)
    n_batches = len(batches)
    width = round(executed / (n_batches * batch))
    lr = default_lr(True, None)

    log(f"{shape}: matmul rate at {batch} x {width}")
    mm = matmul_rate(cfg, batch, width, repeats)
    log(f"{shape}: bare loop, {warmup} + {steps} steps")
    collator = Collator(tok.pad_token_id)
    phases, opt, tot = bare_loop(model, batches, collator, warmup, steps, lr)
    measured = [batches[k % n_batches] for k in range(warmup, warmup + steps)]
    flops_exec = sum(step_flops(cfg, [max(len(f["input_ids"]) for f in b)] * len(b)) for b in measured)
    flops_useful = sum(step_flops(cfg, [len(f["input_ids"]) for f in b]) for b in measured)
    bare_rate = steps / tot["seconds"]

    log(f"{shape}: components")
    inputs = collator(batches[0])
    loss = model(**inputs).loss
    loss.backward()
    clip_s = _median_time(lambda: torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0), repeats)
    model.zero_grad(set_to_none=True)
    loss_s = loss_time(model, inputs, repeats)
    save_s = save_time(model, opt, max(1, min(repeats, 3)))

    log(f"{shape}: Trainer, {warmup} + {steps} steps")
    fresh, _ = build_model(shape, seed=0, tokenizer=tok)
    with tempfile.TemporaryDirectory() as tmp:
        trainer_rate, trainer_exec, trainer = trainer_loop(fresh, feats, tok, shape, batch, warmup, steps, Path(tmp))
        log_s = _median_time(lambda: trainer.log({"loss": 1.0, "grad_norm": 1.0, "learning_rate": 1e-3}), repeats)
        trainer.state.log_history.clear()

    step_gflop = flops_exec / steps / 1e9
    return {
        "shape": shape, "params": count_parameters(model), "matmul_params": matmul_params(cfg), "batch": batch,
        "width": width, "tokens_executed": tot["executed"] / steps, "tokens_useful": tot["useful"] / steps,
        "padding_share": 1 - useful / executed, "padding_share_sorted": 1 - useful / executed_sorted,
        "gflop_step": step_gflop, **mm, "bare_steps_s": bare_rate,
        "bare_gflops": flops_exec / tot["seconds"] / 1e9, "bare_useful_gflops": flops_useful / tot["seconds"] / 1e9,
        "pct_of_matmul": 100 * flops_exec / tot["seconds"] / 1e9 / mm["matmul_gflops"],
        "trainer_steps_s": trainer_rate, "trainer_bare_ratio": trainer_rate / bare_rate,
        "trainer_tokens_executed": trainer_exec,
        "collate_ms": 1e3 * phases["collate"], "forward_ms": 1e3 * phases["forward"],
        "backward_ms": 1e3 * phases["backward"], "optimizer_ms": 1e3 * phases["optimizer"],
        "loss_ms": 1e3 * loss_s, "clip_ms": 1e3 * clip_s, "save_ms": 1e3 * save_s / SAVE_STEPS,
        "log_ms": 1e3 * log_s / LOG_STEPS, "save_s": save_s, "threads": torch.get_num_threads(),
    }


# ------------------------------------------------------------------ report
def reading(table: pd.DataFrame) -> list[str]:
    lines = []
    for r in table.itertuples():
        step_ms = 1e3 / r.bare_steps_s
        parts = {"collation": r.collate_ms, "forward": r.forward_ms, "backward": r.backward_ms,
                 "optimizer": r.optimizer_ms}
        big = max(parts, key=parts.get)
        lines.append(
            f"- `{r.shape}`: the bare step runs at {r.bare_gflops:.1f} GFLOP/s executed, {r.pct_of_matmul:.0f}% of "
            f"the {r.matmul_gflops:.1f} GFLOP/s its own GEMMs reach alone ({r.matmul_ms:.1f} ms of GEMMs in a "
            f"{step_ms:.1f} ms step); the largest phase is the {big} ({parts[big]:.1f} ms). The loss over the "
            f"vocabulary alone is {r.loss_ms:.1f} ms ({100 * r.loss_ms / step_ms:.0f}% of the step).")
        lines.append(
            f"  Padding is {100 * r.padding_share:.0f}% of the executed tokens; batches of sorted lengths would pad "
            f"{100 * r.padding_share_sorted:.0f}% (executed tokens x{(1 - r.padding_share) / (1 - r.padding_share_sorted):.2f}). "
            f"The Trainer runs at {r.trainer_bare_ratio:.2f}x the bare loop's steps/s; gradient clipping "
            f"({r.clip_ms:.2f} ms), logging every {LOG_STEPS} ({r.log_ms:.3f} ms/step) and a checkpoint every "
            f"{SAVE_STEPS} ({r.save_s * 1e3:.0f} ms, {r.save_ms:.2f} ms/step) are part of the difference.")
    return lines


def markdown(table: pd.DataFrame, meta: dict, note: str = "") -> str:
    md = ["# Student training roofline (issue 21)", "", f"`{meta['command']}`", "",
          f"Fresh preset students (float32, project tokenizer), batch {meta['batch']}, on {RECORDS} demo-suite "
          f"reference traces (right-padded per batch by the project's collator, batches in a seeded random order); "
          f"{meta['warmup']} warm-up + {meta['steps']} measured steps per loop. {meta['threads']} torch thread(s); "
          f"{meta['wall_s']:.0f} s wall in all.", "",
          "| shape | params | batch | executed tokens/step | padding | matmul GFLOP/s | step GFLOP/s (bare) | % of matmul "
          "| Trainer steps/s | bare steps/s | Trainer/bare |",
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    md += [f"| `{r.shape}` | {r.params:,} | {r.batch} | {r.tokens_executed:,.0f} | {100 * r.padding_share:.0f}% | "
           f"{r.matmul_gflops:.1f} | {r.bare_gflops:.1f} | {r.pct_of_matmul:.0f}% | {r.trainer_steps_s:.2f} | "
           f"{r.bare_steps_s:.2f} | {r.trainer_bare_ratio:.2f} |" for r in table.itertuples()]
    md += ["", "Components, ms per step:", "",
           "| shape | step (bare) | collation | forward | backward | optimizer | loss over vocab | grad clip | "
           f"checkpoint / {SAVE_STEPS} | log / {LOG_STEPS} | GEMMs alone | padding, sorted batches |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    md += [f"| `{r.shape}` | {1e3 / r.bare_steps_s:.1f} | {r.collate_ms:.2f} | {r.forward_ms:.1f} | "
           f"{r.backward_ms:.1f} | {r.optimizer_ms:.2f} | {r.loss_ms:.2f} | {r.clip_ms:.2f} | {r.save_ms:.2f} | "
           f"{r.log_ms:.3f} | {r.matmul_ms:.1f} | {100 * r.padding_share_sorted:.0f}% |" for r in table.itertuples()]
    md += ["", "*matmul GFLOP/s*: the step's GEMMs (each linear layer's forward, input-gradient and weight-gradient "
           "products at batch x mean padded width, the lm_head included, and the per-head attention products), each "
           "shape timed alone with `torch.matmul`, FLOPs / summed time; *GEMMs alone* is that summed time. *step "
           "GFLOP/s*: counted FLOPs of the executed (padded) batches, 6 P tokens + 12 layers d_attn width^2 per "
           "sequence (P: parameters in matmuls, lm_head included), / the bare loop's wall time; *% of matmul* is "
           "their ratio. *padding*: pad share of the executed tokens. *Trainer*: the project's `DistillTrainer` as "
           f"`train_student` builds it (save_steps {RUNNER_SAVE_STEPS}, logging_steps {RUNNER_LOG_STEPS}, as the "
           "experiment runner asks). Components: medians; collation, forward, backward and optimizer (step + "
           "zero_grad) are the bare loop's own phases; *loss over vocab* is lm_head + cross-entropy forward and "
           "backward alone; *checkpoint* is `save_pretrained` + the optimizer state. Every column is in training.csv.",
           "", "## Reading", "", *reading(table)]
    if note:
        md += ["", note.strip()]
    md += ["", "## Machine", ""]
    md += [f"- {k}: {v}" for k, v in meta["machine"].items()]
    return "\n".join(md) + "\n"


def command(argv: list[str]) -> str:
    return shlex.join(["python", "-m", "antidistill.eval.bench.training", *argv])


def _shapes(raw: str) -> list[str]:
    import argparse

    from antidistill.students.models.presets import PRESETS

    names = [s.strip() for s in raw.split(",") if s.strip()]
    bad = [s for s in names if s not in PRESETS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown shape {bad[0] if bad else raw!r}; valid shapes: {', '.join(PRESETS)}")
    return list(dict.fromkeys(names))


def machine(threads: int) -> dict:
    import platform

    import torch
    import transformers

    from ..experiment.runner import cpu_info

    info = cpu_info()
    flags = [f for f in info.pop("cpu_flags").split() if f.startswith(("avx", "amx", "fma"))]
    return {**info, "cpu_flags (vector)": " ".join(flags), "torch_threads": threads,
            "python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "load average (1/5/15 min)": " / ".join(f"{x:.2f}" for x in os.getloadavg())}


def _spin(parent: int) -> None:  # one CPU-bound process, as a second command on the machine would be
    exit_with_parent(parent)  # a killed bench must not leave it spinning
    while True:
        pass


def contention(shape: str, batch: int, warmup: int, steps: int, threads: list[int]) -> pd.DataFrame:
    """The bare loop's steps/s with each torch thread count, alone and beside one CPU-bound process
    of the same priority (a spinning child): how much a step loses when another program takes a core.
    A fair share of the machine costs cpus / (cpus - 1); far more is threads waiting at barriers."""
    import multiprocessing

    import torch

    from antidistill.students.batching import Collator
    from antidistill.students.models.presets import build_model
    from antidistill.students.training.spec import default_lr

    before, rows = torch.get_num_threads(), []
    _, tok = build_model(shape, seed=0)
    batches = shuffled_batches(demo_features(tok), batch)
    try:
        for t in threads:
            torch.set_num_threads(t)
            rate = {}
            for side in ("idle", "contended"):
                model, _ = build_model(shape, seed=0, tokenizer=tok)  # the same fresh weights each time
                spinner = multiprocessing.get_context("spawn").Process(target=_spin, args=(os.getpid(),), daemon=True)
                if side == "contended":
                    spinner.start()
                    time.sleep(1.0)  # the child is running before the clock starts
                try:
                    log(f"{shape}: bare loop with {t} thread(s), {side}")
                    _, _, tot = bare_loop(model, batches, Collator(tok.pad_token_id), warmup, steps,
                                          default_lr(True, None))
                finally:
                    if spinner.is_alive():
                        spinner.terminate()
                        spinner.join()
                rate[side] = steps / tot["seconds"]
            rows.append({"shape": shape, "threads": t, "idle_steps_s": rate["idle"],
                         "contended_steps_s": rate["contended"], "slowdown": rate["idle"] / rate["contended"]})
    finally:
        torch.set_num_threads(before)
    return pd.DataFrame(rows)


def contention_markdown(df: pd.DataFrame, cpus: int) -> list[str]:
    fair = cpus / max(cpus - 1, 1)
    md = ["## Beside another CPU-bound process", "",
          f"The bare loop alone and beside one spinning process of the same priority (`--contention`), per torch "
          f"thread count. A fair share of {cpus} CPU(s) with one taken would cost {fair:.1f}x; a larger slowdown "
          "is threads waiting at barriers for a core the other process holds.", "",
          "| shape | torch threads | idle steps/s | contended steps/s | slowdown |", "|---|---:|---:|---:|---:|"]
    md += [f"| `{r.shape}` | {r.threads} | {r.idle_steps_s:.2f} | {r.contended_steps_s:.2f} | {r.slowdown:.2f}x |"
           for r in df.itertuples()]
    return md + [""]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = Parser(prog="python -m antidistill.eval.bench.training", description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", type=_shapes, default=list(SHAPES), help="preset shapes, comma-separated (default tiny,mini)")
    p.add_argument("--steps", type=POSITIVE, default=30, help="measured steps per loop (default 30)")
    p.add_argument("--warmup", type=integer(0, 10_000), default=5, help="steps before measuring (default 5)")
    p.add_argument("--batch-size", type=POSITIVE, default=BATCH, help=f"default {BATCH}, the students' default")
    p.add_argument("--threads", type=integer(1, 1024), help="torch threads (default: torch's own)")
    p.add_argument("--repeats", type=POSITIVE, default=5, help="timed samples per GEMM shape and component (default 5)")
    p.add_argument("--contention", action="store_true",
                   help="also time the first shape's bare loop beside one CPU-bound process, with all threads and one")
    p.add_argument("--note", default="", help="a paragraph added to the reading")
    p.add_argument("--out", default="results/bench")
    args = p.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    t0 = time.perf_counter()
    load_start = os.getloadavg()
    try:
        out.mkdir(parents=True, exist_ok=True)
        with library_chatter(verbose=False):
            rows = [bench_shape(s, args.batch_size, args.warmup, args.steps, args.repeats) for s in args.shapes]
            threads = sorted({torch.get_num_threads(), 1}, reverse=True)
            contended = contention(args.shapes[0], args.batch_size, args.warmup, args.steps, threads) \
                if args.contention else None
    except (UserError, OSError) as err:
        p.exit(2, f"{p.prog}: error: {err}\n")
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    info = machine(torch.get_num_threads())
    info["load average at start (1/5/15 min)"] = " / ".join(f"{x:.2f}" for x in load_start)
    meta = {"command": command(argv), "batch": args.batch_size, "warmup": args.warmup, "steps": args.steps,
            "threads": torch.get_num_threads(), "wall_s": time.perf_counter() - t0, "machine": info}
    with atomic_write(out / "training.csv") as fh:
        table.round(5).to_csv(fh, index=False)
    note = args.note
    spare = (os.cpu_count() or 1) - torch.get_num_threads()
    if load_start[0] > spare + 0.5:  # another process held the cores this run's threads need
        note = (f"**Other load.** The 1-minute load average was {load_start[0]:.2f} at the start on "
                f"{os.cpu_count()} CPU(s) with {torch.get_num_threads()} torch thread(s): another process held cores "
                "these threads need, and a multi-threaded GEMM then waits at its barrier for the scheduler (tens of "
                "ms per call); the figures are not the machine's.\n\n" + note)
    text = markdown(table, meta, note)
    if contended is not None:
        with atomic_write(out / "training_contention.csv") as fh:
            contended.round(5).to_csv(fh, index=False)
        text += "\n" + "\n".join(contention_markdown(contended, os.cpu_count() or 1))
    with atomic_write(out / "training.md") as fh:
        fh.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
