import json

import pytest
import torch

from antidistill.students.corpus import read_corpus
from antidistill.students.batching import Collator
from antidistill.students.training.trainer import kd_loss
from antidistill.students.training.distill import mix_records, train_student
from antidistill.students.training.lora import parse_lora
from antidistill.students.models.loader import load_model
from antidistill.watermark.errors import UserError


def _train(corpus, out, **kw):
    args = dict(max_steps=24, batch_size=8, progress=False, logging_steps=4, save_steps=1000)
    student = kw.pop("student", "tiny")
    args.update(kw)
    return train_student(student, corpus, out, **args)


@pytest.mark.parametrize("lora", [None, "r=8,alpha=16"])
def test_short_run_lowers_loss_and_saves_a_loadable_model(corpora, tmp_path, lora):
    m = _train(corpora["raw"], tmp_path / "s", lora=lora)
    losses = [l for _, l in m["losses"]]
    # adapters on a frozen, randomly initialised base learn slower than full fine-tuning
    assert losses[-1] < losses[0] - (0.1 if lora else 0.3), losses
    assert m["global_step"] == 24
    if lora:
        assert m["n_trainable"] < m["n_parameters"] / 2
    else:
        assert m["n_trainable"] == m["n_parameters"]
    model, tok = load_model(str(tmp_path / "s"))  # the output folder resolves to its model/
    ids = torch.tensor([read_corpus(corpora["raw"]).records[0]["prompt_ids"]])
    with torch.no_grad():
        assert torch.isfinite(model(ids).logits).all()
    assert json.loads((tmp_path / "s" / "train_manifest.json").read_text())["corpus"]["protection"] == "none"


def test_logit_kd_lowers_kl(corpora, tmp_path):
    m = _train(corpora["kgw"], tmp_path / "kd", mode="logit-kd")
    losses = [l for _, l in m["losses"]]
    assert losses[-1] < losses[0] - 0.3, losses


def test_kd_loss_is_kl_to_renormalised_topk():
    logits = torch.randn(1, 3, 10)
    ids = torch.tensor([[[1, 2], [0, 0], [3, 4]]])
    lp = torch.log(torch.tensor([[[0.6, 0.2], [1.0, 1.0], [0.3, 0.3]]]))
    mask = torch.tensor([[True, False, True]])
    got = kd_loss(logits, ids, lp, mask)
    q = torch.log_softmax(logits, -1)
    p0 = torch.tensor([0.75, 0.25])
    p2 = torch.tensor([0.5, 0.5])
    want = ((p0 * (p0.log() - q[0, 0, [1, 2]])).sum() + (p2 * (p2.log() - q[0, 2, [3, 4]])).sum()) / 2
    assert torch.allclose(got, want)
    # zero exactly when the student equals the renormalised teacher on the top-k and puts nothing elsewhere
    perfect = torch.full((1, 1, 10), -1e9)
    perfect[0, 0, 1], perfect[0, 0, 2] = 0.75 ** 1, 0.0
    perfect[0, 0, 1], perfect[0, 0, 2] = torch.log(torch.tensor(0.75)), torch.log(torch.tensor(0.25))
    assert kd_loss(perfect, ids[:, :1], lp[:, :1], mask[:, :1]).abs() < 1e-5


def test_collator_masks_prompt_and_aligns_kd():
    feats = [{"input_ids": [1, 5, 6, 7, 2], "n_prompt": 2, "topk_ids": [[6, 9], [7, 9], [2, 9]],
              "topk_logprobs": [[-0.1, -3], [-0.2, -3], [-0.3, -3]]},
             {"input_ids": [1, 5, 8], "n_prompt": 2, "topk_ids": [[8, 9]], "topk_logprobs": [[-0.1, -3]]}]
    b = Collator(pad_id=0, kd=True)(feats)
    assert b["input_ids"].tolist() == [[1, 5, 6, 7, 2], [1, 5, 8, 0, 0]]
    assert b["kd_mask"].tolist() == [[False, True, True, True, False], [False, True, False, False, False]]
    # the logits at position t predict input t+1: KD targets hold exactly the next real tokens
    assert b["kd_ids"][0, 1:4, 0].tolist() == [6, 7, 2] and b["kd_ids"][1, 1, 0].item() == 8
    sft = Collator(pad_id=0, kd=False)(feats)
    assert sft["labels"].tolist() == [[-100, -100, 6, 7, 2], [-100, -100, 8, -100, -100]]


def test_mixture_fraction_and_prompt_disjointness():
    main = [{"id": f"p{i}", "src": "raw"} for i in range(200)]
    other = [{"id": f"p{i}", "src": "wm"} for i in range(200)]
    mixed = mix_records(main, other, 0.05, seed=0)
    assert len(mixed) == 200 and sum(r["src"] == "wm" for r in mixed) == 10
    assert len({r["id"] for r in mixed}) == 200  # no prompt taught twice
    assert mix_records(main, other, 0.05, seed=0) == mixed
    assert mix_records(main, other, 0.05, seed=1) != mixed
    assert all(r["src"] == "wm" for r in mix_records(main, other, 1.0, seed=0))
    with pytest.raises(UserError, match="needs a second"):
        mix_records(main, None, 0.1, seed=0)
    with pytest.raises(UserError, match="--mix RHO"):
        mix_records(main, other, None, seed=0)
    with pytest.raises(UserError, match=r"\[0, 1\]"):
        mix_records(main, other, 1.5, seed=0)


def test_mixture_training_records_both_corpora(corpora, tmp_path):
    m = _train(corpora["raw"], tmp_path / "mix", mix_corpus=corpora["kgw"], mix=0.25, max_steps=4)
    assert m["mix"] == 0.25 and m["mix_corpus"]["protection"].startswith("kgw")
    assert m["n_examples"] == 64


def test_resume_after_interruption(corpora, tmp_path, monkeypatch):
    from antidistill.students.training import trainer as trainer_mod

    real = trainer_mod.DistillTrainer.training_step
    seen = {"n": 0}

    def dies_after_6(self, *a, **kw):
        seen["n"] += 1
        if seen["n"] > 6:
            raise KeyboardInterrupt
        return real(self, *a, **kw)

    monkeypatch.setattr(trainer_mod.DistillTrainer, "training_step", dies_after_6)
    with pytest.raises(KeyboardInterrupt):
        _train(corpora["raw"], tmp_path / "r", max_steps=10, save_steps=4)
    assert not (tmp_path / "r" / "model").exists()
    monkeypatch.setattr(trainer_mod.DistillTrainer, "training_step", real)
    m = _train(corpora["raw"], tmp_path / "r", max_steps=10, save_steps=4)
    assert m["resumed_from"] == "checkpoint-4" and m["global_step"] == 10
    with pytest.raises(UserError, match="other settings"):
        (tmp_path / "r" / "train_manifest.json").unlink()
        _train(corpora["raw"], tmp_path / "r", max_steps=10, save_steps=4, lr=1e-2)


def test_tokenizer_mismatch_retokenizes_unless_told_not_to(corpora, tmp_path):
    from antidistill.students.models.presets import build_model
    from antidistill.students.models.tokenizer import train_tokenizer
    from antidistill.students.tasks.suite import corpus_text

    other_tok = train_tokenizer(corpus_text(200), vocab_size=300)
    model, _ = build_model("tiny", tokenizer=other_tok)
    model.save_pretrained(tmp_path / "other")
    other_tok.save_pretrained(tmp_path / "other")
    with pytest.raises(UserError, match="was tokenized with tokenizer"):
        _train(corpora["raw"], tmp_path / "o", student=str(tmp_path / "other"), retokenize=False)
    assert not (tmp_path / "o" / "model").exists()
    with pytest.raises(UserError, match="logit KD needs the teacher's vocabulary"):
        _train(corpora["kgw"], tmp_path / "o1", student=str(tmp_path / "other"), mode="logit-kd")
    with pytest.raises(UserError, match="only with --mode sft"):
        _train(corpora["kgw"], tmp_path / "o2", student=str(tmp_path / "other"), mode="logit-kd", retokenize=True)
    m = _train(corpora["raw"], tmp_path / "o3", student=str(tmp_path / "other"), max_steps=2)
    assert m["retokenize"] and m["global_step"] == 2  # cross-tokenizer: SFT on the text, re-encoded


def test_bad_training_inputs(corpora, tmp_path):
    with pytest.raises(UserError, match="valid presets"):
        _train(corpora["raw"], tmp_path / "a", student="huge")
    with pytest.raises(UserError, match="needs a corpus generated with --topk-logprobs"):
        raw_no_topk = tmp_path / "c"
        from antidistill.students.protect.generate import generate_corpus

        generate_corpus("tiny", raw_no_topk, prompts=4, max_new_tokens=8, progress=False)
        _train(raw_no_topk, tmp_path / "b", mode="logit-kd")
    with pytest.raises(UserError, match="unknown --mode"):
        _train(corpora["raw"], tmp_path / "d", mode="rl")
    with pytest.raises(UserError, match="not a corpus folder"):
        _train(tmp_path, tmp_path / "e")
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match="cannot create output folder"):
        _train(corpora["raw"], tmp_path / "f" / "g")


@pytest.mark.parametrize("spec,expected", [
    ("r=16,alpha=32", {"r": 16, "alpha": 32.0}),
    ("r=4", {"r": 4, "alpha": 32.0}),
    ("r=8,alpha=8,dropout=0.1,targets=q_proj+v_proj", {"r": 8, "dropout": 0.1, "targets": ["q_proj", "v_proj"]}),
])
def test_parse_lora(spec, expected):
    got = parse_lora(spec)
    assert {k: got[k] for k in expected} == expected


@pytest.mark.parametrize("spec", ["r=0", "r=x", "alpha=-1", "rank=4", "r", "dropout=1"])
def test_parse_lora_rejects(spec):
    with pytest.raises(UserError, match="--lora"):
        parse_lora(spec)


def test_lora_init_does_not_depend_on_what_the_process_ran_before(corpora, tmp_path):
    # a pretrained base (a folder: nothing seeds it on loading) with LoRA, trained twice after the
    # global generator was left in two different states: the same student
    model, tok = load_model("tiny", seed=0)
    model.save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    weights = []
    for k, state in enumerate((1, 2)):
        torch.manual_seed(state)
        _train(corpora["raw"], tmp_path / f"s{k}", student=str(tmp_path / "base"), lora="r=4,alpha=8", max_steps=2)
        trained, _ = load_model(str(tmp_path / f"s{k}"))
        weights.append(torch.cat([p.detach().flatten() for p in trained.parameters()]))
    assert torch.equal(weights[0], weights[1])
