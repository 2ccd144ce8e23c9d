import pytest
import torch

from antidistill.watermark import Key, UserError, check_vocab, known_schemes, parse_protection


@pytest.mark.parametrize("spec, canonical", [
    ("none", "none"),
    ("kgw", "kgw:gamma=0.25,delta=2,h=1,hash=left"),
    ("KGW: delta=3 , h=4,hash=self", "kgw:gamma=0.25,delta=3,h=4,hash=self"),
    ("unigram:gamma=0.5,delta=2", "unigram:gamma=0.5,delta=2"),
    ("gumbel:h=2", "gumbel:h=2"),
    ("synthid:depth=16,h=4", "synthid:depth=16,h=4,mask=repeated"),  # the reference's rule by default
    ("synthid:mask=none", "synthid:depth=16,h=4,mask=none"),  # what "synthid:depth=16,h=4" meant before
    ("gumbel:h=2,mask=none", "gumbel:h=2"),  # gumbel's default unchanged: its spec (and cache keys) too
    ("gumbel:mask=repeated", "gumbel:h=2,mask=repeated"),
    ("ads:lam=1", "ads:lam=1,eps=0.01,proxy=distilled"),
    ("ads:grad=token", "ads:lam=1,eps=0.01,proxy=distilled"),  # the default stays out: old cache keys hold
    ("ads:grad=sequence", "ads:lam=1,eps=0.01,proxy=distilled,grad=sequence"),
    ("temperature", "temperature:t=1"),
    ("temperature:t=1.50", "temperature:t=1.5"),
    ("trace", "trace:keep=answer"),
    ("trace:keep=results", "trace:keep=results"),
])
def test_canonical_round_trip(spec, canonical):
    p = parse_protection(spec)
    assert p.spec == canonical == str(p)
    assert parse_protection(p.spec) == p


@pytest.mark.parametrize("spec, message", [
    ("rot13", "unknown protection scheme 'rot13'; valid schemes: " + ", ".join(known_schemes())),
    ("kgw:gamma=1.5", "kgw: gamma=1.5 is out of range (0.001 <= gamma <= 0.999)"),
    ("kgw:gamma=1e-300", "kgw: gamma=1e-300 is out of range (0.001 <= gamma <= 0.999)"),
    ("kgw:delta=1e308", "kgw: delta=1e308 is out of range (0 <= delta <= 100)"),
    ("unigram:delta=1e39", "unigram: delta=1e39 is out of range (0 <= delta <= 100)"),
    ("kgw:gamma=0", "kgw: gamma=0 is out of range (0.001 <= gamma <= 0.999)"),
    ("kgw:h=-1", "kgw: h=-1 is out of range (1 <= h <= 16)"),
    ("gumbel:h=-2", "gumbel: h=-2 is out of range (0 <= h <= 16)"),
    ("kgw:h=1.5", "kgw: h='1.5' is not a valid int"),
    ("kgw:hash=right", "kgw: hash='right' is not one of left, self"),
    ("kgw:beta=2", "kgw: unknown parameter 'beta'; valid parameters: gamma, delta, h, hash, entropy"),
    ("none:x=1", "none: unknown parameter 'x'; valid parameters: none"),
    ("kgw:gamma", "kgw: parameter 'gamma' must look like name=value"),
    ("kgw:h=1,h=2", "kgw: parameter 'h' given twice"),
    ("synthid:depth=40", "synthid: depth=40 is out of range (1 <= depth <= 32)"),
    ("kgw:delta=nan", "kgw: delta must be finite"),
    ("synthid:mask=off", "synthid: mask='off' is not one of repeated, none"),
    ("synthid:h=0", "synthid: mask=repeated needs h >= 1 (with h=0 every context after the first token is a "
                    "repeat, so nothing would be watermarked); give mask=none"),
    ("ads:grad=batch", "ads: grad='batch' is not one of token, sequence"),
    ("temperature:t=0", "temperature: t=0 is out of range (0 < t <= 100)"),
    ("trace:keep=all", "trace: keep='all' is not one of answer, results"),
    ("", "empty protection spec; valid schemes: " + ", ".join(known_schemes())),
])
def test_bad_specs_name_the_valid_choices(spec, message):
    with pytest.raises(UserError) as err:
        parse_protection(spec)
    assert str(err.value) == message


def test_none_has_no_processor_or_detector():
    p = parse_protection("none")
    assert p.processor(Key(b"k"), 10) is None and not p.has_detector
    with pytest.raises(UserError, match="has no detector"):
        p.detector(Key(b"k"))
    assert set(known_schemes()) >= {"none", "kgw", "unigram", "gumbel", "synthid"}


def test_processor_refuses_scores_of_another_width():
    proc = parse_protection("kgw").processor(Key(b"k"), 100)
    with pytest.raises(UserError, match="vocab_size=100"):
        proc(torch.zeros(1, 5, dtype=torch.long), torch.zeros(1, 101))


def test_check_vocab(tiny_lm):
    class Tok:
        def __init__(self, n):
            self.n = n

        def __len__(self):
            return self.n

    assert check_vocab(tiny_lm, Tok(1000)) == 1000
    assert check_vocab(tiny_lm) == 1000
    with pytest.raises(UserError, match="output layer has 1000 rows but the tokenizer has 1001"):
        check_vocab(tiny_lm, Tok(1001))
    with pytest.raises(UserError):
        check_vocab(tiny_lm, Tok(990))
    assert check_vocab(tiny_lm, Tok(990), allow_padding=True) == 1000


@pytest.mark.parametrize("kwargs, message", [({"temperature": 0}, "temperature must be > 0"),
                                             ({"top_k": -1}, "top_k must be >= 0"),
                                             ({"top_p": 1.5}, "top_p must lie in (0, 1]")])
@pytest.mark.parametrize("spec", ["gumbel", "synthid"])
def test_sampling_settings_are_validated(spec, kwargs, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace("]", r"\]")):
        parse_protection(spec).processor(Key(b"k"), 10, **kwargs)
