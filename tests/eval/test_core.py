"""The experiment core: the generic config checker, the store, the scheduler, stage timing."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from antidistill.eval.core.config import as_dict, build, check_name, load_toml, overlay, setting
from antidistill.eval.core.jobs import Job, Scheduler, Stages
from antidistill.eval.core.store import StageLog, Store
from antidistill.students.cache import config_hash
from antidistill.watermark.errors import UserError


@dataclass(frozen=True)
class Inner:
    n: int = setting(3, lo=1, hi=10)
    rate: float = setting(0.5, lo=0, hi=1, lo_open=True)
    modes: tuple[str, ...] = setting(("a",), choices=("a", "b"))


@dataclass(frozen=True)
class Outer:
    name: str = "x"
    flag: bool = True
    inner: Inner = field(default_factory=Inner)
    pairs: tuple[tuple[str, float], ...] = (("s", 0.1),)
    free: dict = setting({})
    maybe: float | None = None

    def __post_init__(self):
        if self.inner.n > 5 and not self.flag:
            raise UserError("config keys inner.n > 5 needs flag")


def test_defaults_overlay_and_plain_dict():
    cfg = overlay(Outer, {"inner": {"n": 4}}, {"inner": {"modes": ["b", "a"]}, "pairs": [["t", 1]]})
    assert cfg.inner == Inner(n=4, modes=("b", "a")) and cfg.pairs == (("t", 1.0),)
    assert isinstance(cfg.pairs[0][1], float)
    d = as_dict(cfg)
    assert d["inner"] == {"n": 4, "rate": 0.5, "modes": ["b", "a"]} and d["pairs"] == [["t", 1.0]]
    # the JSON of the typed config is what a dict config hashed to
    assert config_hash(d) == config_hash(json.loads(json.dumps(d)))
    assert overlay(Outer, {"free": {"a": 1}}, {"free": {"b": 2}}).free == {"b": 2}  # a dict field is replaced whole


@pytest.mark.parametrize("data, words", [
    ({"inner": {"nn": 1}}, "unknown config key inner.'nn'; valid keys here: n, rate, modes"),
    ({"bogus": 1}, "unknown config key 'bogus'"),
    ({"inner": {"n": 1.7}}, "config key inner.n must be an integer, got 1.7"),
    ({"inner": {"n": True}}, "config key inner.n must be an integer"),
    ({"inner": {"n": 11}}, "config key inner.n must lie in 1 <= x <= 10, got 11"),
    ({"inner": {"rate": 0}}, "config key inner.rate must lie in 0 < x <= 1, got 0.0"),
    ({"inner": {"rate": float("nan")}}, "config key inner.rate must be finite"),
    ({"inner": {"modes": ["c"]}}, "config key inner.modes: 'c' is not one of a, b"),
    ({"inner": {"modes": []}}, "config key inner.modes must list at least one of a, b"),
    ({"inner": 3}, "config key inner must be a table, got 3"),
    ({"flag": "yes"}, "config key flag must be true or false"),
    ({"name": 3}, "config key name must be a string"),
    ({"pairs": [["t"]]}, "config key pairs must be a list of 2 items"),
    ({"maybe": "x"}, "config key maybe must be a number or none"),
    ({"inner": {"n": 6}, "flag": False}, "inner.n > 5 needs flag"),
])
def test_one_line_naming_the_key(data, words):
    with pytest.raises(UserError) as err:
        overlay(Outer, data)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_toml_and_names(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[inner]\nn = 2\n")
    assert build(Outer, load_toml(p)).inner.n == 2
    p.write_text("[inner\n")
    with pytest.raises(UserError, match="not valid TOML"):
        load_toml(p)
    with pytest.raises(UserError, match="does not exist"):
        load_toml(tmp_path / "missing.toml")
    assert check_name("run-1.b") == "run-1.b"
    with pytest.raises(UserError, match="plain folder name"):
        check_name("../x")


def test_store_paths_build_and_log(tmp_path):
    store = Store(tmp_path, version=2)
    assert store.path("k", {"a": 1}) == tmp_path / "k" / config_hash({"v": 2, "a": 1})
    assert Store(tmp_path, None).path("k", {"a": 1}) == tmp_path / "k" / config_hash({"a": 1})
    made = store.build("s", "one", "k", {"a": 1}, lambda tmp: (tmp / "f").write_text("x"))
    assert (made / "f").read_text() == "x"
    store.build("s", "one", "k", {"a": 1}, lambda tmp: pytest.fail("built twice"))
    assert [e["status"] for e in store.log.events] == ["computed", "cached"]

    def broken(tmp):
        (tmp / "half").write_text("x")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.build("s", "two", "k", {"a": 2}, broken)
    assert not store.path("k", {"a": 2}).exists() and list((tmp_path / "k").iterdir()) == [made]


def _write(args):
    target, text, reads = args
    prefix = "".join(Path(r, "out").read_text() for r in reads)
    Path(target).mkdir(parents=True)
    Path(target, "out").write_text(prefix + text)


@pytest.mark.parametrize("workers", [1, 2])
def test_scheduler_rounds_cache_and_dedup(tmp_path, workers):
    a, b, c = (tmp_path / x for x in "abc")
    jobs = [Job("s", "c", c, _write, (c, "c", (a, b)), after=(a, b)),
            Job("s", "a", a, _write, (a, "a", ()), cost=2), Job("s", "b", b, _write, (b, "b", (a,)), after=(a,)),
            Job("s", "a again", a, _write, (a, "a", ()), cost=2)]
    log = StageLog()

    class Bar:
        n = 0

        def update(self, k):
            self.n += k

        def set_postfix_str(self, s):
            pass

    bar = Bar()
    Scheduler(workers, log).run(jobs, bar)
    assert (c / "out").read_text() == "aabc" and bar.n == 4
    assert len(log.computed("s")) == 3  # the two jobs making `a` ran once
    log2 = StageLog()
    Scheduler(workers, log2).run(jobs)
    assert log2.computed() == [] and len(log2.events) == 3


def test_scheduler_names_a_job_that_can_never_run(tmp_path):
    job = Job("s", "orphan", tmp_path / "x", _write, (tmp_path / "x", "x", ()), after=(tmp_path / "never",))
    with pytest.raises(RuntimeError, match="orphan"):
        Scheduler(1, StageLog()).run([job])


def test_stages_time_each_stage():
    st = Stages(quiet=True)
    with st.stage("one", 2) as bar:
        bar.update(2)
    with st.stage("one"):
        pass
    assert set(st.seconds) == {"one"} and st.seconds["one"] >= 0 and "one" in st.cpu_seconds


def _workers_of(parent: int) -> list[int]:
    """Pids of the spawned pool workers whose parent is `parent` (from /proc)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat, cmd = (d / "stat").read_text(), (d / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and b"spawn_main" in cmd and b"resource_tracker" not in cmd:
            out.append(int(d.name))
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the workers in /proc")
def test_workers_exit_when_the_run_is_killed(tmp_path):
    """A killed run's workers must not finish their jobs and hold their folders from the rerun."""
    script = ("import sys, time\nfrom pathlib import Path\nfrom antidistill.eval.core.jobs import Job, Scheduler\n"
              "from antidistill.eval.core.store import StageLog\nt = Path(sys.argv[1])\n"
              "Scheduler(2, StageLog(), threads=1).run([Job('s', str(i), t / str(i), time.sleep, 300) for i in (0, 1)])\n")
    parent = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)])
    try:
        deadline = time.monotonic() + 120
        while len(workers := _workers_of(parent.pid)) < 2:
            assert parent.poll() is None and time.monotonic() < deadline, "the pool never started"
            time.sleep(0.2)
        time.sleep(1.0)  # the workers are sleeping in their jobs
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 30
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(w) for w in workers), "a worker outlived its killed run"
