"""The natural pipeline's detection table on a small model: lengths, rules, nulls (no SmolLM2 needed)."""
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, LogitsProcessorList

from antidistill.eval.experiment.natural import RESAMPLE, detect_table, report
from antidistill.watermark import Key, parse_protection

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
    cfg = {"alpha": 1e-3, "lengths": [30, 60, 100], "rule": {"max_top1": 0.9, "min_entropy": None}}
    df = detect_table(model, records, key, cfg)
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
