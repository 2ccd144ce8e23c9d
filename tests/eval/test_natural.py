"""The natural world as a run: the detection-against-length table (lengths, rules, nulls) on a small
model, and the natural presets as run configs (no SmolLM2 needed)."""
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, LogitsProcessorList

from antidistill.eval.experiment.config import PRESETS, load_config
from antidistill.eval.measures.detectability import length_table
from antidistill.watermark import Key, parse_protection
from antidistill.watermark.entropy import ChoiceRule
from antidistill.watermark.errors import UserError

V = 500
KGW = "kgw:gamma=0.25,delta=2,h=1,hash=left"
SWEET = KGW + ",entropy=1"


def _model(seed=0):
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, pad_token_id=0, eos_token_id=None)).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(15.0)  # skewed next-token distributions: some choice points, some forced
    return model


def _sample(model, key, spec, seed, n=24, prompt_seed=1):
    prompts = torch.randint(3, V, (n, 6), generator=torch.Generator().manual_seed(prompt_seed))
    proc = None if spec == "none" else LogitsProcessorList([parse_protection(spec).processor(key, V)])
    torch.manual_seed(seed)
    out = model.generate(prompts, attention_mask=torch.ones_like(prompts), do_sample=True, top_k=0,
                         max_new_tokens=60, min_new_tokens=60, logits_processor=proc, pad_token_id=0)
    return [c.tolist() for c in out[:, 6:]], [p.tolist() for p in prompts]


@pytest.fixture(scope="module")
def setup():
    model, key = _model(), Key.from_text("natural test")
    return model, key, {s: _sample(model, key, s, seed) for s, seed in (("none", 1), (KGW, 3), (SWEET, 4))}


def test_length_table_rows(setup):
    model, key, texts = setup
    df = length_table(model, {KGW: texts[KGW], SWEET: texts[SWEET]}, texts["none"], key, 1e-3, [30, 60, 100],
                      ChoiceRule(max_top1=0.9))
    assert set(df.protection) == {KGW, SWEET} and len(df) == 2 * 3 * 2
    assert set(df[df.protection == SWEET].rule) == {"all", "entropy>=1"}
    full = df[(df.protection == KGW) & (df.tokens == 60)]
    assert (full.n_pos == 24).all() and (full.n_neg == 24).all()
    assert (df[df.tokens == 100].n_pos == 0).all()  # no text is 100 tokens long
    assert (df[df.tokens == 60]["tpr@0.001"] > 0.5).all()
    assert (df[df.tokens <= 60]["fpr@0.001"] <= 1 / 24).all()
    kgw_all = df[(df.protection == KGW) & (df.rule == "all")].set_index("tokens").median_log10_p
    assert kgw_all[60] < kgw_all[30]  # the longer the text, the smaller its p-value
    unfiltered = length_table(model, {KGW: texts[KGW]}, texts["none"], key, 1e-3, [30], ChoiceRule())
    assert list(unfiltered.rule) == ["all"]  # no rule: no second, identical row


def test_length_table_null_one_key_one_template():
    """One fixed key over many unprotected texts that share one prompt (where errors cluster): the
    flag rate of single texts stays within the exact binomial bound at alpha, with the rule and without."""
    from scipy.stats import binom

    model, key = _model(1), Key.from_text("natural null")
    prompts = torch.full((200, 6), 7)
    torch.manual_seed(5)
    out = model.generate(prompts, attention_mask=torch.ones_like(prompts), do_sample=True, top_k=0, max_new_tokens=40,
                         min_new_tokens=40, pad_token_id=0)
    seqs, prm = [c.tolist() for c in out[:, 6:]], [p.tolist() for p in prompts]
    alpha = 0.05
    # the unprotected texts play both roles: the first 100 as the "protected" side, the rest as negatives
    df = length_table(model, {KGW: (seqs[:100], prm[:100])}, (seqs[100:], prm[100:]), key, alpha, [20, 40],
                      ChoiceRule(max_top1=0.9))
    bound = binom.ppf(1 - 1e-3, 100, alpha) / 100
    assert (df[f"tpr@{alpha:g}"] <= bound).all() and (df[f"fpr@{alpha:g}"] <= bound).all()


def test_natural_presets_are_run_configs():
    assert PRESETS["natural"]["task"] == "natural" and PRESETS["natural"]["teacher"] == {"model": "smollm2"}
    for name in ("natural", "natural-smoke"):
        try:
            cfg = load_config(preset=name)
        except UserError as err:  # without the smollm2 extra: one line naming what is missing
            assert "smollm2" in str(err) or "minilm" in str(err).lower() or "reasoning-gym" in str(err)
            continue
        assert cfg.task == "natural" and cfg.eval.lengths and cfg.eval.similarity and cfg.teacher_tokenizer == "smollm2"


def test_natural_alias_refuses_other_presets(capsys, tmp_path):
    from antidistill.eval.cli import main

    assert main(["natural", "--preset", "smoke", "--out", str(tmp_path / "res")]) == 2
    err = capsys.readouterr().err.strip()
    assert "natural --preset: 'smoke' is not one of natural, natural-smoke" in err and "\n" not in err
    assert not (tmp_path / "res").exists()


@pytest.mark.parametrize("toml, words", [
    ("[eval]\nlengths = [0]", "eval.lengths"),
    ("[eval]\nlengths = [50, 50]", "eval.lengths lists a length twice"),
    ("[eval]\nlengths = 50", "eval.lengths"),
    ("[eval]\nlengths = [1e400]", "eval.lengths"),
    ("[eval]\nsimilarity = \"yes\"", "eval.similarity"),
    ("task = \"natural:gsm=2\"", "gsm=2 is not a share in [0, 1]"),
    ("task = \"natural:gsm=0.2\"", "cannot run on this task"),  # the default protections include trace:keep=answer
])
def test_bad_natural_keys_are_one_line(tmp_path, toml, words):
    path = tmp_path / "bad.toml"
    path.write_text(toml + "\n")
    with pytest.raises(UserError) as err:
        load_config(path)
    assert words in str(err.value) and "\n" not in str(err.value)
