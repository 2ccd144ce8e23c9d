"""Prompts: `load_prompts` (a count of a task's prompts, a prompt file or a list, as generation
reads them) and the generator of the shipped instruction set (offline).

- `instructions`: a few hundred varied requests (explain, summarize, list, rewrite, compare, ...)
  built from templates x topics and shipped as `data/instructions.jsonl`; the file is written by
  `python -m antidistill.students.tasks.prompts` (read by `natural.instructions`, the natural task's data)
  and a test checks that it matches this code.
gsm_symbolic word problems come from the `natural` task (students/tasks/natural.py), through
`gym:gsm_symbolic`'s prompts and grader.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from antidistill.watermark.errors import UserError, check_text, read_lines

from .natural import DATA_FILE, instructions  # the shipped set is the natural task's data
from .registry import parse_task

__all__ = ["instructions", "load_prompts", "DATA_FILE"]
N_INSTRUCTIONS = 300

TOPICS = (
    "photosynthesis", "the water cycle", "compound interest", "vaccines", "plate tectonics", "black holes",
    "the French Revolution", "machine learning", "inflation", "recycling", "the immune system", "solar power",
    "the printing press", "climate change", "supply and demand", "the human heart", "volcanoes", "democracy",
    "the internet", "bees and pollination", "sleep", "the Roman Empire", "electric cars", "coral reefs",
    "public libraries", "remote work", "the moon landing", "antibiotics", "coffee", "urban gardening",
    "earthquakes", "the stock market", "renewable energy", "ancient Egypt", "healthy breakfasts",
    "password security", "rainforests", "the Olympic Games", "learning a new language", "time management",
)
AUDIENCES = ("a ten-year-old", "a busy manager", "a first-year student", "a retired engineer")
TEMPLATES = (
    ("explain", "Explain {topic} to {audience}."),
    ("explain", "In a short paragraph, explain why {topic} matters."),
    ("summarize", "Write a three-sentence summary of what everyone should know about {topic}."),
    ("summarize", "Summarize the main ideas behind {topic} in plain words."),
    ("list", "List five interesting facts about {topic}."),
    ("list", "Give four common misconceptions about {topic} and correct each one."),
    ("rewrite", "Rewrite this sentence to sound more formal: \"{topic} is kind of a big deal these days.\""),
    ("rewrite", "Rewrite this sentence for {audience}: \"The mechanisms underlying {topic} are multifaceted.\""),
    ("compare", "Compare {topic} and {other}: one way they are alike and two ways they differ."),
    ("compare", "What do {topic} and {other} have in common?"),
    ("describe", "Describe {topic} in the style of a travel guide."),
    ("advise", "Give {audience} three practical tips related to {topic}."),
    ("define", "Define {topic} in one sentence, then give an example."),
    ("question", "Write three quiz questions about {topic}, with answers."),
    ("story", "Write a short story of about five sentences that involves {topic}."),
)


def build_instructions(n: int = N_INSTRUCTIONS, seed: int = 0) -> list[dict]:
    """n distinct prompts, each template x topic pair at most once, in a seeded order."""
    rng = random.Random(seed)
    pairs = [(t, topic) for t in range(len(TEMPLATES)) for topic in range(len(TOPICS))]
    rng.shuffle(pairs)
    out = []
    for i, (t, topic) in enumerate(pairs[:n]):
        kind, template = TEMPLATES[t]
        other = TOPICS[(topic + 1 + rng.randrange(len(TOPICS) - 1)) % len(TOPICS)]
        text = template.format(topic=TOPICS[topic], other=other, audience=rng.choice(AUDIENCES))
        out.append({"id": f"inst{i:04d}", "kind": kind, "prompt": text[0].upper() + text[1:]})
    return out



# ---------------------------------------------------------------- prompts for generation


def load_prompts(prompts, *, seed: int = 0, chat: bool = False, task=None) -> tuple[list[dict], str]:
    """Prompt records [{id, prompt, (skill, answer)}] and a description of their source.

    `prompts` is a count N (the distillation split of `task`, default the demo suite, N prompts drawn with `seed`),
    a file (.jsonl with a "prompt" field per line, or text with one prompt per line), or a list
    of strings. Plain-text prompts for a model without a chat template get a trailing newline,
    the convention the demo teacher was trained with.
    """
    if isinstance(prompts, int) or (isinstance(prompts, str) and prompts.strip().isdigit()):
        n = int(prompts)
        if n <= 0:
            raise UserError(f"--prompts must be a positive count or a file, got {n}")
        task = parse_task(task)
        examples = task.examples("distill", n, seed=seed)
        name = "task-suite" if task.family == "demo" else task.spec
        return ([{"id": e.id, "prompt": e.prompt, "skill": e.skill, "answer": e.answer} for e in examples],
                f"{name}:distill:seed={seed}")
    if isinstance(prompts, (list, tuple)):
        texts = list(prompts)
        return ([{"id": f"p{i:06d}", "prompt": _line_prompt(t, chat)} for i, t in enumerate(texts)], "list")
    path = Path(prompts)
    if not path.exists():
        raise UserError(f"prompt file {path} does not exist; pass --prompts N (task-suite prompts) or a "
                        ".jsonl/.txt file")
    records = []
    for lineno, line in read_lines(path, "prompt file"):
        if not line.strip():
            continue
        if path.suffix == ".jsonl":
            try:
                obj = json.loads(line)
                text = obj["prompt"]
                if not isinstance(text, str):
                    raise TypeError
            except (json.JSONDecodeError, KeyError, TypeError):
                raise UserError(f"{path} line {lineno}: expected a JSON object with a string \"prompt\" field") \
                    from None
            check_text(text, f"{path} line {lineno}", "prompt")
            records.append({"id": check_text(str(obj.get("id", f"p{len(records):06d}")), f"{path} line {lineno}",
                                             "id"), "prompt": text})
        else:
            records.append({"id": f"p{len(records):06d}", "prompt": _line_prompt(line, chat)})
    if not records:
        raise UserError(f"prompt file {path} holds no prompts")
    ids = [r["id"] for r in records]
    if len(set(ids)) != len(ids):
        raise UserError(f"prompt file {path}: ids must be unique")
    return records, f"file:{path.name}"


def _line_prompt(text: str, chat: bool) -> str:
    return text if chat or text.endswith("\n") else text + "\n"


def main() -> None:
    path = Path(__file__).parent.parent / "data" / DATA_FILE
    path.parent.mkdir(exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in build_instructions()), encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
