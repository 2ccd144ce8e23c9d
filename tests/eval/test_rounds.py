"""run_rounds: a planner that asks only for what it can see is called until it asks for nothing new;
corpus edits (this process) run before trainings, and whatever a round made is never run twice."""
from pathlib import Path
from types import SimpleNamespace

from antidistill.eval.core.store import StageLog
from antidistill.eval.experiment.lab import LOCAL, ready, run_rounds
from antidistill.eval.core.jobs import Job

RUNS: list[str] = []


def make(target: Path) -> None:
    RUNS.append(target.name)
    target.mkdir()


class FakeLab:
    def __init__(self):
        self.log, self.verbose = StageLog(), False
        self.cfg = SimpleNamespace(threads=1)  # the run's fixed thread count (0 would sample the machine)


def test_rounds_follow_what_exists(tmp_path):
    RUNS.clear()
    src, edit, first, student = (tmp_path / n for n in ("src", "edit", "first", "student"))
    src.mkdir()

    def planner():
        jobs = [Job("students", "first", first, make, first, after=(src,)),
                Job(LOCAL, "edit", edit, make, edit, after=(src, first))]
        if edit.is_dir():  # like a filter whose output decides the student's corpus: visible once made
            jobs.append(Job("students", "student", student, make, student, after=(edit,)))
        return ready(jobs)

    lab = FakeLab()
    run_rounds(planner, lab, workers=1)
    assert RUNS == ["first", "edit", "student"]
    assert sorted(lab.log.computed()) == ["edit", "first", "student"]
    run_rounds(planner, lab := FakeLab(), workers=1)  # everything exists: found, nothing made
    assert RUNS == ["first", "edit", "student"] and lab.log.computed() == []
    assert sorted(e["item"] for e in lab.log.events) == ["edit", "first", "student"]
