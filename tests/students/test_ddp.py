"""Data-parallel training through accelerate: two CPU processes (gloo) under transformers' Trainer."""
import json
import os
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_accelerate_launch_trains_with_two_processes(corpora, tmp_path):
    out = tmp_path / "ddp"
    # `accelerate launch` is this module; calling it through the interpreter finds it in any venv.
    # --multi_gpu is accelerate's torchrun launcher; with --device cpu the processes join over gloo
    # (--cpu would start a single process).
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "-m", "antidistill.eval.cli", "train", "--student", "tiny",
           "--corpus", str(corpora["raw"]), "--out", str(out), "--max-steps", "3", "--batch-size", "4",
           "--device", "cpu", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((out / "train_manifest.json").read_text())
    assert manifest["world_size"] == 2 and manifest["global_step"] == 3
    assert (out / "model" / "config.json").is_file()
