import pytest
import torch

from antidistill.students.models.presets import PRESETS, build_model

from antidistill.students.models.loader import load_model
from antidistill.students.tasks.suite import corpus_text, make_split
from antidistill.students.models.tokenizer import project_tokenizer, tokenizer_fingerprint, train_tokenizer
from antidistill.watermark import check_vocab
from antidistill.watermark.errors import UserError


def test_tokenizer_round_trips_text_and_save_load(tmp_path):
    tok = project_tokenizer()
    texts = [e.text for e in make_split("test", 20)] + ["Héllo, wörld! 12345\n\n  tabs\tand ünïcode ✓"]
    for text in texts:
        ids = tok(text).input_ids
        assert ids[0] == tok.bos_token_id
        assert tok.decode(ids, skip_special_tokens=True) == text
    tok.save_pretrained(tmp_path)
    again = type(tok).from_pretrained(tmp_path)
    assert tokenizer_fingerprint(again) == tokenizer_fingerprint(tok)
    assert again(texts).input_ids == tok(texts).input_ids


def test_tokenizer_splits_digits_and_is_compact():
    tok = project_tokenizer()
    pieces = tok.convert_ids_to_tokens(tok("Add 587 and 57.").input_ids)
    assert pieces[:6] == ["<s>", "Add", "Ġ5", "8", "7", "Ġand"]
    assert len(tok) <= 512


def test_tokenizer_training_is_deterministic():
    a = train_tokenizer(corpus_text(300), vocab_size=300)
    b = train_tokenizer(corpus_text(300), vocab_size=300)
    assert tokenizer_fingerprint(a) == tokenizer_fingerprint(b)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_build_save_load(preset, tmp_path):
    model, tok = build_model(preset, seed=7)
    assert check_vocab(model, tok) == len(tok)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded, tok2 = load_model(str(tmp_path))
    x = torch.tensor([tok("Sort 3 1 2.\n").input_ids])
    with torch.no_grad():
        assert torch.equal(model.eval()(x).logits, loaded(x).logits)
    assert tokenizer_fingerprint(tok2) == tokenizer_fingerprint(tok)
    assert tok2.padding_side == "left"


def test_preset_weights_depend_on_seed_only():
    a, _ = build_model("tiny", seed=1)
    b, _ = build_model("tiny", seed=1)
    c, _ = build_model("tiny", seed=2)
    wa, wb, wc = (m.model.layers[0].mlp.up_proj.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_unknown_names_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="valid presets: tiny"):
        build_model("huge")
    with pytest.raises(UserError, match="does not exist"):
        load_model(str(tmp_path / "nowhere"))
    with pytest.raises(UserError, match="not a saved model"):
        load_model(str(tmp_path))
