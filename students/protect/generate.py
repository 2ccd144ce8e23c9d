"""`generate_corpus`: sample a teacher on prompts under a protection into a resumable corpus folder.

The steps, each in its own room: resolve the teacher (`models.loader`) and the prompts
(`tasks.prompts`), bind the folder to the plan (`sample.CorpusJob`), prepare the protection
(`prepare.prepare`: only when shards are missing) and sample the missing shards.
"""
from __future__ import annotations

from pathlib import Path

from antidistill.watermark import load_key, parse_protection
from antidistill.watermark.errors import UserError, output_lock

from ..cache import check_out_dir
from ..corpus import MANIFEST, drop_empty_start
from ..models.folders import resolve_device
from ..models.loader import load_model
from ..models.teacher import teacher_dir
from ..tasks.prompts import load_prompts
from ..tasks.registry import parse_task
from .prepare import check_inputs, prepare
from .sample import CorpusJob, SampleSettings


def generate_corpus(teacher, out, *, protection="none", key=None, key_file=None, prompts=100,
                    temperature: float = 1.0, max_new_tokens: int = 128, topk_logprobs: int = 0,
                    seed: int = 0, batch_size: int = 32, shard_size: int = 256, device=None,
                    progress: bool = True, teacher_name: str | None = None, cache_dir=None, task=None) -> dict:
    """Sample the teacher on the prompts under `protection`; write (or finish) the corpus in `out`.

    `teacher` is a name for `load_model` or a (model, tokenizer) pair (then give `teacher_name`
    for the manifest); a count of `prompts` draws the distillation split of `task` (default: demo).
    Returns the final manifest.
    """
    protection = parse_protection(protection)
    task = parse_task(task)
    check_inputs(protection, [], topk_logprobs, task)  # what the task cannot support, before a teacher is loaded
    resolve_device(device)  # refuse a missing device before loading anything
    if protection.needs_key and key is None:
        key = load_key(key_file)
    settings = SampleSettings(temperature=temperature, max_new_tokens=max_new_tokens, topk_logprobs=topk_logprobs,
                              seed=seed, batch_size=batch_size, shard_size=shard_size)
    out = Path(out)
    check_out_dir(out)
    # A second generation into this folder is refused while this one runs (the lock also removes the
    # folder again when this call created it and wrote nothing into it).
    with output_lock(out, "corpus folder"):
        try:
            return _generate_into(out, teacher, teacher_name, protection, key, prompts, settings, device, progress,
                                  cache_dir, task)
        except BaseException:
            drop_empty_start(out)
            raise


def _generate_into(out: Path, teacher, teacher_name, protection, key, prompts, settings: SampleSettings, device,
                   progress: bool, cache_dir, task) -> dict:
    for stale in [*out.glob(f".{MANIFEST}.*.tmp"), *out.glob(".shard-*.jsonl.*.tmp")]:
        stale.unlink(missing_ok=True)  # left by a kill inside atomic_write: never part of the corpus
    if not (out / MANIFEST).exists() and any(p.name != MANIFEST and not p.name.startswith(".") for p in out.iterdir()):
        raise UserError(f"output folder {out} is not empty and holds no corpus manifest; choose an empty "
                        "or new folder")
    model, tokenizer, teacher_name = _open_teacher(teacher, teacher_name, cache_dir)
    device = resolve_device(device)
    model = model.to(device).eval()
    records, source = load_prompts(prompts, seed=settings.seed, chat=bool(getattr(tokenizer, "chat_template", None)),
                                   task=task)
    check_inputs(protection, records, settings.topk_logprobs, task)
    job = CorpusJob.open(out, model, tokenizer, teacher_name, records, source, protection, key, settings, task)
    if job.finished:
        return job.manifest
    prepared = prepare(protection, model, tokenizer, teacher_name, cache_dir=cache_dir, device=device,
                       progress=progress, task=task)
    return job.run(prepared, progress)


def _open_teacher(teacher, teacher_name: str | None, cache_dir):
    """(model, tokenizer, the name the manifest records) of a model name or a (model, tokenizer) pair."""
    if isinstance(teacher, str):
        teacher_name = teacher_name or teacher
        if teacher == "demo":  # name the exact recipe, so corpora of different demo teachers never mix
            teacher_name = teacher_dir(cache_dir=cache_dir).name
        model, tokenizer = load_model(teacher, cache_dir=cache_dir)
        return model, tokenizer, teacher_name
    model, tokenizer = teacher
    return model, tokenizer, teacher_name or getattr(model.config, "_name_or_path", "") or "model"
