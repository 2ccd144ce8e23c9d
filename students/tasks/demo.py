"""`demo`: the demo suite (`suite.py`) as a task."""
from __future__ import annotations

from .base import Task
from .suite import Example, TaskConfig, grade, make_split
from .traces import thin_trace


class DemoTask(Task):
    """The demo suite (`suite.py`): four skills, varied step-by-step traces, `Answer: X`."""

    family = "demo"

    def __init__(self, config: TaskConfig | None = None):
        self.config = config or TaskConfig()
        self.spec = "demo"

    def examples(self, split, n, seed=0, unique=True):
        return make_split(split, n, seed=seed, config=self.config, unique=unique)

    def score(self, example, completion):
        if isinstance(example, dict):
            example = Example(id=example.get("id", ""), skill=example["skill"], split="", prompt="", completion="",
                              answer=example["answer"])
        return float(grade(example, completion))

    def supports(self, feature):
        return None

    def thin(self, completion, skill, keep):
        return thin_trace(completion, skill, keep)
