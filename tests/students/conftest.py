"""Shared fixtures: one cache folder per test session, a fast-trained demo teacher, small corpora."""
from __future__ import annotations

import os

import pytest

from antidistill.students.tasks.suite import TaskConfig
from antidistill.students.models.teacher import TeacherConfig

# The demo teacher's recipe with fewer steps: it learns the traces' varied wording (the entropy a
# watermark needs) in seconds, though not the arithmetic. The full teacher is timed in results/.
FAST_TEACHER = TeacherConfig(preset="tiny", tasks=TaskConfig(), n_train=4000, steps=300, batch_size=32, lr=4e-3,
                             warmup=30, n_test=40, max_new_tokens=96)
KGW = "kgw:gamma=0.25,delta=2,h=1,hash=left"


@pytest.fixture(scope="session", autouse=True)
def cache_dir(tmp_path_factory):
    """Every test builds tokenizer and teachers into a private cache, never the user's."""
    path = tmp_path_factory.mktemp("cache")
    old = os.environ.get("ANTIDISTILL_CACHE")
    os.environ["ANTIDISTILL_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("ANTIDISTILL_CACHE", None)
    else:
        os.environ["ANTIDISTILL_CACHE"] = old


@pytest.fixture(scope="session")
def fast_teacher(cache_dir):
    from antidistill.students.models.teacher import demo_teacher

    return demo_teacher(cache_dir=cache_dir, config=FAST_TEACHER, progress=False)


@pytest.fixture(scope="session")
def key():
    from antidistill.watermark import Key

    return Key.from_text("students-test-key")


@pytest.fixture(scope="session")
def corpora(fast_teacher, key, tmp_path_factory):
    """A raw and a KGW-protected corpus of the fast teacher on the same 64 prompts, with top-k."""
    from antidistill.students.protect.generate import generate_corpus

    root = tmp_path_factory.mktemp("corpora")
    out = {}
    for name, spec in (("raw", "none"), ("kgw", KGW)):
        generate_corpus(fast_teacher, root / name, protection=spec, key=key, prompts=64, max_new_tokens=96,
                        topk_logprobs=4, batch_size=32, shard_size=32, progress=False, teacher_name="fast-demo")
        out[name] = root / name
    return out
