"""The demo teacher: a model the project trains itself on the run's task.

Either a small Llama-style preset trained from scratch (the default, on the task suite), or a
pretrained model (`smollm2`, a folder) fine-tuned once into a competent teacher of a task it does
poorly out of the box (the pretrained-teacher presets).

`demo_teacher()` trains it on first use (a few minutes on 2 CPU cores), grades it on the held-out
test split, and caches model, tokenizer and a `teacher_card.json` (accuracy per skill, training
time) under the cache folder, keyed by a hash of its config: a second call loads it. Training is
deterministic under the config's seed (fixed data order, fixed init, fixed number of steps).
"""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from antidistill.watermark.errors import UserError

from ..batching import Collator, encode_prompts, example_features, length_grouped_batches
from ..cache import build_once, cache_root, config_hash
from ..tasks.registry import DemoTask, accuracy_by_skill, parse_task
from ..tasks.suite import TaskConfig
from .folders import from_pretrained
from .presets import PRESETS, build_model
from .pretrained import check_pretrained, load_pretrained
from .sampling import generate_batch
from .tokenizer import project_tokenizer

TEACHER_VERSION = 3


@dataclass(frozen=True)
class TeacherConfig:
    """The demo teacher's recipe (shape, task settings, data size, schedule, seed, grading): its hash
    names the cache folder, so every field, and the `TEACHER_VERSION`, is part of the key."""

    # Chosen by a sweep of 14 configs on 2 pinned CPU cores (results/demo_teacher/): the 2-layer
    # `tiny` shape trains 2x faster per token than `mini` and 4x faster than `small`, which buys
    # steps; length-grouped batches (a third less padding per step) buy 7000 of them in 5 minutes.
    # A preset (trained from scratch with the project tokenizer) or a pretrained model fine-tuned with its own.
    preset: str = "tiny"
    tasks: TaskConfig = field(default_factory=TaskConfig)
    n_train: int = 64000
    steps: int = 7000
    batch_size: int = 32
    lr: float = 4e-3
    warmup: int = 100
    weight_decay: float = 0.01
    seed: int = 0
    n_test: int = 400  # graded held-out examples (all skills)
    max_new_tokens: int = 128
    # The task it learns: the demo suite (difficulty in `tasks`), or any task spec whose examples carry
    # reference completions (a gym or jsonl task's are `Answer: X`).
    task: str = "demo"

    def __post_init__(self):
        # Configs read from TOML/JSON give the task settings as a dict of lists.
        if isinstance(self.tasks, dict):
            tasks = TaskConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in self.tasks.items()})
            object.__setattr__(self, "tasks", tasks)
        if self.preset == "demo":
            raise UserError("demo teacher: preset 'demo' would fine-tune the demo teacher on itself; name a preset "
                            "or a pretrained model")
        if self.preset not in PRESETS:
            check_pretrained(self.preset, "demo teacher's preset (a preset to train, or a pretrained model to fine-tune)")

    def learned_task(self):
        return DemoTask(self.tasks) if self.task == "demo" else parse_task(self.task)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["version"] = TEACHER_VERSION
        if self.task == "demo":  # the demo teacher's cache key predates the field
            del d["task"]
        else:
            d["task"] = self.learned_task().key
        return d


def teacher_dir(config: TeacherConfig | None = None, cache_dir=None) -> Path:
    config = config or TeacherConfig()
    return cache_root(cache_dir) / "teachers" / f"demo-{config_hash(config.as_dict())}"


def demo_teacher(cache_dir=None, config: TeacherConfig | None = None, progress: bool = True):
    """(model, tokenizer) of the demo teacher, trained and cached on first use."""
    config = config or TeacherConfig()
    target = teacher_dir(config, cache_dir)

    def build(tmp: Path):
        model, tok, card = train_teacher(config, cache_dir=cache_dir, progress=progress)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "teacher_card.json").write_text(json.dumps(card, indent=2) + "\n")

    if not target.is_dir() and progress:
        print(f"antidistill: training the demo teacher (first use; cached in {target})", file=sys.stderr)
    return from_pretrained(str(build_once(target, build)))


def teacher_card(cache_dir=None, config: TeacherConfig | None = None) -> dict:
    """The card (accuracy per skill, training time, config) of the cached demo teacher."""
    demo_teacher(cache_dir, config)
    return json.loads((teacher_dir(config, cache_dir) / "teacher_card.json").read_text())


def train_teacher(config: TeacherConfig, cache_dir=None, progress: bool = True):
    """Train the demo teacher from scratch, or fine-tune the pretrained model its preset names;
    returns (model, tokenizer, card)."""
    if config.preset in PRESETS:
        tokenizer = project_tokenizer(cache_dir)
        model, _ = build_model(config.preset, seed=config.seed, tokenizer=tokenizer)
    else:
        model, tokenizer = load_pretrained(config.preset, seed=config.seed, cache_dir=cache_dir)
    task = config.learned_task()
    data = example_features(tokenizer, task.examples("train", config.n_train, seed=config.seed, unique=False))
    gen = torch.Generator().manual_seed(config.seed)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=config.lr, betas=(0.9, 0.98))

    def lr_at(step):  # linear warmup, cosine down to 10%
        if step < config.warmup:
            return (step + 1) / config.warmup
        t = (step - config.warmup) / max(1, config.steps - config.warmup)
        return 0.1 + 0.45 * (1 + math.cos(math.pi * t))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    model.train()
    lengths = [len(f["input_ids"]) for f in data]
    collate = Collator(tokenizer.pad_token_id)
    batches: list[list[int]] = []
    t0 = time.perf_counter()
    bar = tqdm(range(config.steps), desc="demo teacher", unit="step", disable=not progress, file=sys.stderr)
    for step in bar:
        if not batches:
            batches = length_grouped_batches(lengths, config.batch_size, gen)
        batch = collate([data[i] for i in batches.pop()])
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}", tok_s=f"{collate.n_tokens / (time.perf_counter() - t0):.0f}")
    train_seconds = time.perf_counter() - t0
    model.eval()
    t1 = time.perf_counter()
    accuracy = grade_model(model, tokenizer, task.examples("test", config.n_test, seed=config.seed),
                           max_new_tokens=config.max_new_tokens, task=task)
    card = {
        "config": config.as_dict(),
        "config_hash": config_hash(config.as_dict()),
        "accuracy": accuracy,
        "n_test": config.n_test,
        "train_seconds": round(train_seconds, 1),
        "grade_seconds": round(time.perf_counter() - t1, 1),
        "train_tokens_per_second": round(collate.n_tokens / train_seconds, 1),
        "final_loss": round(float(loss.item()), 4),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    return model, tokenizer, card


@torch.no_grad()
def grade_model(model, tokenizer, examples, *, batch_size: int = 100, max_new_tokens: int = 128,
                do_sample: bool = False, temperature: float = 1.0, processor=None, seed: int = 0,
                task=None) -> dict:
    """Accuracy per skill of the model's completions on `task`'s examples (greedy unless `do_sample`)."""
    completions = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start:start + batch_size]
        out = generate_batch(model, tokenizer, encode_prompts(tokenizer, [e.prompt for e in chunk]),
                             max_new_tokens=max_new_tokens, do_sample=do_sample, temperature=temperature,
                             processor=processor, seed=seed + start)
        completions += tokenizer.batch_decode(out.completions, skip_special_tokens=True)
    return {k: round(v, 4) for k, v in accuracy_by_skill(parse_task(task), examples, completions).items()}
