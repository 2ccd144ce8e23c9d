"""Benchmark of the proxy-based countermeasures (issue 9, "Speed"): ADS and PoE sampling beside
plain sampling, same teacher, batch, tokens and seed, measured side by side in one process.

    python -m antidistill.eval.bench.countermeasures [--quick] [--threads 1] [--out results/bench]

For each (teacher, proxy) pair of randomly initialised Llama models built from configs (no
download): `generate` plain, with `ads:lam=0.05,eps=0.01` and with `poe:gamma=0.3`, batch 16,
exactly 64 new tokens, do_sample, temperature 1, top_k=0. Variants are interleaved in each repeat
(order rotated); a ratio is the median over repeats of (variant time / plain time in that repeat),
in wall time and in process CPU time. Beside them, in the same run, the cost of one KV-cached
decoding forward pass (one token per row, batch 16) of each model, which gives the floors the
issue sets: ADS <= 1 + 2 * (proxy forward / teacher forward) + 0.1, PoE <= 1 + proxy/teacher + 0.1;
the forward passes are timed in every repeat, beside the generate runs.
ADS's gradient here is the proxy's loss gradient on random text: timing does not depend on it.

Results: OUT/countermeasures.csv and OUT/countermeasures.md (tables + machine).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .watermark import cpu_pressure, git_commit, log, machine_info

SHAPES = {
    # the demo teacher's and the distilled proxy's shape (students/models.py PRESETS["tiny"])
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                 intermediate_size=256),
    "small": dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4,
                  intermediate_size=512),
    "smollm2-135m-shape": dict(num_hidden_layers=30, hidden_size=576, intermediate_size=1536,
                               num_attention_heads=9, num_key_value_heads=3),
}
# (name, teacher shape, proxy shape, vocabulary)
PAIRS = (
    ("demo: tiny teacher, tiny proxy", "tiny", "tiny", 512),
    ("small teacher, tiny proxy", "small", "tiny", 512),
    ("smollm2-135m-shape teacher, tiny proxy", "smollm2-135m-shape", "tiny", 49152),
)
SPECS = {"ads": "ads:lam=0.05,eps=0.01,proxy=bench", "poe": "poe:gamma=0.3,proxy=bench"}


@dataclass
class Plan:
    quick: bool
    pairs: tuple = PAIRS
    repeats: int = 5
    batch: int = 16
    new_tokens: int = 64
    prompt_len: int = 8
    forward_steps: int = 16  # per repeat
    seed: int = 0


def make_plan(quick: bool) -> Plan:
    if quick:
        return Plan(quick=True, pairs=PAIRS[:1], repeats=1, batch=2, new_tokens=8, forward_steps=4)
    return Plan(quick=False)


def build(shape: str, vocab: int, seed: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=vocab, tie_word_embeddings=True, max_position_embeddings=1024, bos_token_id=1,
                      eos_token_id=2, pad_token_id=0, **SHAPES[shape])
    torch.manual_seed(seed)
    return LlamaForCausalLM(cfg).eval()


def random_text_gradient(model, vocab: int, seed: int) -> dict:
    ids = torch.randint(3, vocab, (4, 32), generator=torch.Generator().manual_seed(seed))
    model.zero_grad()
    model(input_ids=ids, labels=ids).loss.backward()
    grad = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    model.zero_grad()
    return grad


class ForwardTimer:
    """Times KV-cached decoding forward passes of one model, as generate and the proxies step them:
    one new token per row, the grown attention mask, its position."""

    def __init__(self, model, plan: Plan, vocab: int):
        from transformers import DynamicCache

        self.model, self.plan = model, plan
        ids = torch.randint(3, vocab, (plan.batch, plan.prompt_len), generator=torch.Generator().manual_seed(1))
        self.cache, self.mask = DynamicCache(), torch.ones_like(ids)
        with torch.no_grad():
            self.out = model(input_ids=ids, attention_mask=self.mask, cache=self.cache, use_cache=True,
                             logits_to_keep=1)

    @torch.no_grad()
    def median_step(self, steps: int) -> tuple[float, float]:
        """Median (wall, CPU) seconds of the next `steps` forward passes."""
        wall, cpu = [], []
        for _ in range(steps):
            nxt = self.out.logits[:, -1].argmax(-1, keepdim=True)
            w0, c0 = time.perf_counter(), time.process_time()
            self.mask = torch.cat([self.mask, self.mask.new_ones(self.plan.batch, 1)], dim=1)
            pos = torch.full((self.plan.batch, 1), self.mask.shape[1] - 1)
            self.out = self.model(input_ids=nxt, attention_mask=self.mask, position_ids=pos, cache=self.cache,
                                  use_cache=True, logits_to_keep=1)
            wall.append(time.perf_counter() - w0)
            cpu.append(time.process_time() - c0)
        return float(np.median(wall)), float(np.median(cpu))


def run_pair(plan: Plan, name: str, t_shape: str, p_shape: str, vocab: int) -> list[dict]:
    from transformers import LogitsProcessorList

    from antidistill.watermark import parse_protection

    teacher, proxy = build(t_shape, vocab, plan.seed), build(p_shape, vocab, plan.seed + 1)
    procs = {"plain": None,
             "ads": parse_protection(SPECS["ads"]).processor(None, vocab, proxy=proxy, temperature=1.0,
                                                             grad=random_text_gradient(proxy, vocab, plan.seed)),
             "poe": parse_protection(SPECS["poe"]).processor(None, vocab, proxy=proxy)}
    prompts = torch.randint(3, vocab, (plan.batch, plan.prompt_len), generator=torch.Generator().manual_seed(2))

    def generate(proc):
        torch.manual_seed(plan.seed)
        return teacher.generate(prompts, attention_mask=torch.ones_like(prompts), do_sample=True, top_k=0,
                                top_p=1.0, temperature=1.0, max_new_tokens=plan.new_tokens,
                                min_new_tokens=plan.new_tokens, eos_token_id=None, pad_token_id=0,
                                logits_processor=LogitsProcessorList([proc]) if proc else None)

    for proc in procs.values():  # warm-up: first calls allocate
        generate(proc)
    timers = {"teacher": ForwardTimer(teacher, plan, vocab), "proxy": ForwardTimer(proxy, plan, vocab)}
    runs = {k: [] for k in procs}
    fwd = {k: [] for k in timers}
    for r in range(plan.repeats):
        order = list(procs)[r % len(procs):] + list(procs)[:r % len(procs)]
        for k in order:
            w0, c0 = time.perf_counter(), time.process_time()
            generate(procs[k])
            runs[k].append((time.perf_counter() - w0, time.process_time() - c0))
        # forward passes timed in every repeat too, so that load from other processes hits both alike
        for k in (("teacher", "proxy") if r % 2 == 0 else ("proxy", "teacher")):
            fwd[k].append(timers[k].median_step(plan.forward_steps))
        log(f"{name}: repeat {r + 1}/{plan.repeats} (load {os.getloadavg()[0]:.2f})")
    t_fwd = [float(np.median([f[i] for f in fwd["teacher"]])) for i in (0, 1)]
    p_fwd = [float(np.median([f[i] for f in fwd["proxy"]])) for i in (0, 1)]
    fwd_ratio, fwd_ratio_cpu = [float(np.median([p[i] / t[i] for p, t in zip(fwd["proxy"], fwd["teacher"])]))
                                for i in (0, 1)]
    rows = []
    for k, extra in (("plain", 0), ("ads", 2), ("poe", 1)):
        wall = np.array([w for w, _ in runs[k]])
        cpu = np.array([c for _, c in runs[k]])
        base_w = np.array([w for w, _ in runs["plain"]])
        base_c = np.array([c for _, c in runs["plain"]])
        floor = 1 + extra * fwd_ratio
        ratio = float(np.median(wall / base_w))
        rows.append(dict(pair=name, teacher=t_shape, proxy=p_shape, vocab=vocab, variant=k,
                         spec=SPECS.get(k, "none"), repeats=plan.repeats, batch=plan.batch,
                         new_tokens=plan.new_tokens, median_s=float(np.median(wall)),
                         median_cpu_s=float(np.median(cpu)), ratio=ratio,
                         ratio_min=float(np.min(wall / base_w)), ratio_max=float(np.max(wall / base_w)),
                         cpu_ratio=float(np.median(cpu / base_c)), extra_forwards=extra,
                         teacher_forward_ms=1e3 * t_fwd[0], proxy_forward_ms=1e3 * p_fwd[0],
                         forward_ratio=fwd_ratio, forward_ratio_cpu=fwd_ratio_cpu, floor=floor,
                         floor_cpu=1 + extra * fwd_ratio_cpu, target=floor + 0.1 if extra else None,
                         meets_target=None if (plan.quick or not extra) else bool(ratio <= floor + 0.1),
                         meets_target_cpu=None if (plan.quick or not extra) else bool(
                             float(np.median(cpu / base_c)) <= 1 + extra * fwd_ratio_cpu + 0.1)))
    return rows


def write_markdown(df: pd.DataFrame, info: dict, plan: Plan, path: Path, note: str = "") -> None:
    def mark(v):
        return "" if v is None or (isinstance(v, float) and np.isnan(v)) else ("yes" if v else "**no**")

    lines = ["# Countermeasure sampling benchmark (issue 9, speed)", ""]
    if note:
        lines += [f"**Note.** {note}", ""]
    if plan.quick:
        lines += ["**`--quick` smoke run: tiny sizes, not the reference figures.**", ""]
    lines += [
        "Generated by `eval/bench/countermeasures.py`; every figure was measured in this one run, in one process "
        "on the machine described at the end.", "",
        f"`generate` of the teacher, batch {plan.batch}, exactly {plan.new_tokens} new tokens after a "
        f"{plan.prompt_len}-token random prompt, `do_sample=True`, temperature 1, `top_k=0`, same seed for every "
        f"variant; {plan.repeats} repeats with the variants interleaved (order rotated). `ratio` = the variant's "
        "wall time ÷ plain's in the same repeat (median, min–max); `cpu ratio` the same in process CPU time, "
        "steadier on a shared machine. `proxy ÷ teacher forward` = the median over repeats of (median time of "
        f"one KV-cached decoding forward pass of the proxy ÷ that of the teacher; one token per row, batch "
        f"{plan.batch}, {plan.forward_steps} passes each, timed in every repeat after the generate runs); `floor` = 1 + (extra forwards) × that ratio, the cost of "
        "the extra proxy passes alone; the target is floor + 0.1. Randomly initialised Llama models built "
        "from configs, float32 on CPU, tied embeddings.", "",
        "| teacher / proxy (vocab) | variant | median s | ratio (min–max) | cpu ratio | proxy ÷ teacher forward "
        "(wall / cpu) | floor (wall / cpu) | target | met (wall / cpu) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for _, r in df.iterrows():
        extra = r.extra_forwards > 0
        lines.append(
            f"| {r.pair} ({r.vocab:,}) | `{r.spec}` | {r.median_s:.3f} | {r.ratio:.3f} ({r.ratio_min:.2f}–"
            f"{r.ratio_max:.2f}) | {r.cpu_ratio:.3f} | "
            + (f"{r.forward_ratio:.3f} / {r.forward_ratio_cpu:.3f} | {r.floor:.3f} / {r.floor_cpu:.3f} | "
               f"≤ {r.target:.3f} | {mark(r.meets_target)} / {mark(r.meets_target_cpu)} |" if extra else
               f"teacher {r.teacher_forward_ms:.2f} ms, proxy {r.proxy_forward_ms:.2f} ms | | | |"))
    lines += ["", "## Machine", ""] + [f"- {k}: {v}" for k, v in info.items()] + [""]
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m antidistill.eval.bench.countermeasures",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small smoke-test version")
    parser.add_argument("--out", default="results/bench", help="output folder (default results/bench)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--note", default="", help="a sentence for the report (e.g. why --threads was set)")
    args = parser.parse_args(argv)
    plan = make_plan(args.quick)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import transformers

    transformers.logging.set_verbosity_error()
    t0, load0, psi0, commit = time.perf_counter(), os.getloadavg(), cpu_pressure(), git_commit()
    rows = []
    for pair in plan.pairs:
        rows += run_pair(plan, *pair)
    df = pd.DataFrame(rows)
    df.to_csv(out / "countermeasures.csv", index=False)
    info = machine_info(argv)
    info["command"] = " ".join(["python -m antidistill.eval.bench.countermeasures", *argv])
    info["commit"] = commit
    info["wall time (s)"] = round(time.perf_counter() - t0, 1)
    info["load average at start / end"] = f"{load0[0]:.2f} / {os.getloadavg()[0]:.2f}"
    psi1 = cpu_pressure()
    if psi0 is not None and psi1 is not None:
        info["CPU pressure (s some task waited for a core, during the run)"] = round((psi1 - psi0) / 1e6, 1)
    write_markdown(df, info, plan, out / "countermeasures.md", args.note)
    log(f"wrote {out / 'countermeasures.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
