"""Nothing half-written blocks the corrected rerun: a diverged training, a crashed generation, a kill
while a checkpoint is being written."""
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from antidistill.students.protect import sample as corpus_mod
from antidistill.students.protect.generate import generate_corpus
from antidistill.students.training.trainer import DistillTrainer
from antidistill.students.training.distill import train_student
from antidistill.watermark.errors import UserError


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory, cache_dir):
    out = tmp_path_factory.mktemp("recovery") / "corpus"
    generate_corpus("tiny", out, prompts=8, max_new_tokens=10, batch_size=8, shard_size=8, progress=False,
                    cache_dir=cache_dir)
    return out


def _train(corpus, out, **kw):
    opts = dict(max_steps=2, batch_size=4, progress=False, save_steps=1000)
    return train_student("tiny", corpus, out, **{**opts, **kw})


@pytest.mark.parametrize("where", ["loss", "weights"])
def test_diverged_training_stops_leaves_no_model_and_the_corrected_rerun_works(small_corpus, tmp_path,
                                                                              monkeypatch, where):
    out = tmp_path / "s"
    if where == "loss":
        real = DistillTrainer.compute_loss

        def nan_loss(self, *a, **k):
            return real(self, *a, **k) * float("nan")

        monkeypatch.setattr(DistillTrainer, "compute_loss", nan_loss)
    else:  # finite losses, but the last step leaves inf weights behind
        real_step = torch.optim.AdamW.step

        def poison(self, *a, **k):
            res = real_step(self, *a, **k)
            self.param_groups[0]["params"][0].data.fill_(float("inf"))
            return res

        monkeypatch.setattr(torch.optim.AdamW, "step", poison)
    with pytest.raises(UserError, match="diverged"):
        _train(small_corpus, out, lr=1e-3, save_steps=1)
    assert not (out / "model").exists() and not (out / "train_plan.json").exists()
    assert not (out / "checkpoints").exists()
    monkeypatch.undo()
    manifest = _train(small_corpus, out, lr=5e-4)  # another lr: no "lr differ"
    assert manifest["global_step"] == 2 and (out / "model" / "config.json").is_file()


def test_refused_training_leaves_no_plan(small_corpus, tmp_path):
    out = tmp_path / "s"
    with pytest.raises(UserError, match="match no module"):
        _train(small_corpus, out, lora="r=2,targets=nothing")
    assert not out.exists()
    assert _train(small_corpus, out, lora="r=2")["global_step"] == 2


def test_incomplete_checkpoint_is_ignored_on_resume(small_corpus, tmp_path):
    out = tmp_path / "s"
    full = _train(small_corpus, out, max_steps=4, save_steps=2)
    # A kill -9 while checkpoint-4 was being written: only its config exists, no final model.
    ck4 = out / "checkpoints" / "checkpoint-4"
    for p in ck4.iterdir():
        if p.name != "config.json":
            p.unlink() if p.is_file() else shutil.rmtree(p)
    before = load_file(out / "model" / "model.safetensors")
    shutil.rmtree(out / "model")
    (out / "train_manifest.json").unlink()
    resumed = _train(small_corpus, out, max_steps=4, save_steps=2)
    assert full["global_step"] == resumed["global_step"] == 4 and resumed["resumed_from"] == "checkpoint-2"
    after = load_file(out / "model" / "model.safetensors")
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_crashed_generation_leaves_no_manifest_that_blocks_the_corrected_command(tmp_path, monkeypatch, cache_dir):
    out = tmp_path / "c"

    def crash(*a, **k):
        raise RuntimeError("simulated crash in the middle of sampling")

    monkeypatch.setattr(corpus_mod, "generate_batch", crash)
    with pytest.raises(RuntimeError):
        generate_corpus("tiny", out, prompts=4, max_new_tokens=6, temperature=1.0, progress=False,
                        cache_dir=cache_dir)
    assert not out.exists()
    monkeypatch.undo()
    m = generate_corpus("tiny", out, prompts=4, max_new_tokens=6, temperature=0.7, progress=False,
                        cache_dir=cache_dir)
    assert m["complete"] and json.loads((out / "manifest.json").read_text())["temperature"] == 0.7
