"""The natural pipeline on a small model (detection table: lengths, rules, nulls), its typed config
and its cache folder names (no SmolLM2 needed)."""
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, LogitsProcessorList

from antidistill.eval.experiment.natural import KEY_TEXT, PRESETS, NaturalRun, natural_config, run_natural
from antidistill.eval.experiment.natural_measures import RESAMPLE, detect_table, report
from antidistill.watermark import Key, parse_protection
from antidistill.watermark.entropy import ChoiceRule
from antidistill.watermark.errors import UserError

V = 500
KGW = "kgw:gamma=0.25,delta=2,h=1,hash=left"
SWEET = KGW + ",entropy=1"


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, pad_token_id=0, eos_token_id=None)).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(15.0)  # skewed next-token distributions: some choice points, some forced
    key = Key.from_text("natural test")
    prompts = torch.randint(3, V, (24, 6), generator=torch.Generator().manual_seed(1))

    def sample(spec, seed):
        proc = None if spec == "none" else LogitsProcessorList([parse_protection(spec).processor(key, V)])
        torch.manual_seed(seed)
        out = model.generate(prompts, attention_mask=torch.ones_like(prompts), do_sample=True, top_k=0,
                             max_new_tokens=60, min_new_tokens=60, logits_processor=proc, pad_token_id=0)
        return [{"prompt_ids": p.tolist(), "completion_ids": c.tolist()} for p, c in zip(prompts, out[:, 6:])]

    records = {"none": sample("none", 1), RESAMPLE: sample("none", 2), KGW: sample(KGW, 3), SWEET: sample(SWEET, 4)}
    return model, key, records


def test_detect_table_rows(setup):
    model, key, records = setup
    df = detect_table(model, records, key, 1e-3, [30, 60, 100], ChoiceRule(max_top1=0.9))
    assert set(df.protection) == {KGW, SWEET} and len(df) == 2 * 3 * 2
    assert set(df[df.protection == SWEET].rule) == {"all", "entropy>=1"}
    full = df[(df.protection == KGW) & (df.tokens == 60)]
    assert (full.n_pos == 24).all() and (full.n_neg == 24).all()
    assert (df[df.tokens == 100].n_pos == 0).all()  # no text is 100 tokens long
    assert (df[df.tokens == 60]["tpr@0.001"] > 0.5).all()
    assert (df[df.tokens <= 60]["fpr@0.001"] <= 1 / 24).all()
    # the longer the text, the smaller its p-value
    kgw_all = df[(df.protection == KGW) & (df.rule == "all")].set_index("tokens").median_log10_p
    assert kgw_all[60] < kgw_all[30]


def test_report_names_every_stage(setup):
    import pandas as pd

    meta = {"config": {"name": "t", "teacher": "x", "n_instructions": 1, "n_gsm": 1, "max_new_tokens": 8,
                       "alpha": 1e-3, "radio_protection": KGW, "lora": "r=8", "train_epochs": 1, "null_keys": 2},
            "device": "cpu", "key_fingerprint": "ab", "wall_seconds": 3.0, "preset": "t",
            "stages": [{"stage": "generate", "seconds": 1.0}, {"stage": "detect", "seconds": 2.0}]}
    text = report(meta, pd.DataFrame({"a": [1]}), pd.DataFrame({"b": [2]}), pd.DataFrame({"c": [3]}))
    assert "| generate | 1 |" in text and "| detect | 2 |" in text and RESAMPLE in text


def test_presets_are_checked_overrides():
    smoke = natural_config("natural-smoke")
    assert smoke.name == "natural-smoke" and smoke.lengths == (24, 48) and smoke.rhos == (0.0, 1.0)
    assert natural_config().max_new_tokens == 400 and PRESETS["natural"] == {}
    assert natural_config("natural-smoke", {"rule": {"min_entropy": 1}}).rule.max_top1 == 0.9  # sub-tables merge


@pytest.mark.parametrize("overrides, words", [
    ({"sedd": 1}, "unknown config key 'sedd'"),
    ({"seed": 1.5}, "config key seed must be an integer, got 1.5"),
    ({"rhos": [0.0, 1.5]}, "config key rhos must lie in 0 <= x <= 1"),
    ({"alpha": 1.0}, "config key alpha must lie in 0 < x < 1"),
    ({"lengths": []}, "config key lengths must list at least one value"),
    ({"rule": {"max_top1": 0}}, "config key rule.max_top1 must lie in 0 < x <= 1"),
    ({"protections": ["kgw:gamma=2"]}, "config key protections: 'kgw:gamma=2'"),
    ({"protections": ["temperature:t=1.5"]}, "has no detector"),
    ({"radio_protection": "gumbel:h=2"}, "config key radio_protection 'gumbel:h=2' must be one of protections"),
    ({"lora": "r=0"}, "config key lora:"),
    ({"n_instructions": 298}, "n_instructions + audit_prompts (298 + 4) must be <= 300"),
    (["seed"], "natural overrides must be a dict"),
])
def test_bad_overrides_are_one_line_naming_the_key(tmp_path, overrides, words):
    with pytest.raises(UserError) as err:
        run_natural("natural-smoke", tmp_path / "out", cache_dir=tmp_path / "cache", overrides=overrides)
    assert words in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_cache_folder_names_are_the_ones_the_old_code_made(tmp_path):
    """natural-smoke's corpora and students under the public key: the hashes of the same dicts as
    before the typed config, so an old cache is reused (these names are on disk in old caches)."""
    run = NaturalRun(natural_config("natural-smoke"), "natural-smoke", tmp_path / "out", "cpu", tmp_path,
                     Key.from_text(KEY_TEXT), "demo")
    corpora = {name: job.target for name, job in run.corpus_jobs(None, []).items()}
    assert {p.parent for p in corpora.values()} == {tmp_path / "natural" / "corpora"}
    assert sorted(p.name for p in corpora.values()) == ["7b62b5f035dff74e", "965bc91c00515ce6", "d665903e1c0825a2",
                                                         "f85259dff0d156cd"]
    students = [job.target for job in run.student_jobs(corpora).values()]
    assert {p.parent for p in students} == {tmp_path / "natural" / "students"}
    assert sorted(p.name for p in students) == ["00045b7632607ddd", "1b76165094633f6b"]
    own = NaturalRun(natural_config("natural-smoke"), "natural-smoke", tmp_path / "out", "cpu", tmp_path,
                     Key.from_text("mine"), "env")
    assert not {j.target for j in own.corpus_jobs(None, []).values()} & set(corpora.values())
