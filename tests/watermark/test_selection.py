"""`TokenHashDetector.select`: what a verdict scores, as one record (`Selection`)."""
import numpy as np
import pytest

from antidistill.watermark import Key, parse_protection
from antidistill.watermark.errors import UserError

SPEC = "kgw:gamma=0.25,delta=2,h=1,hash=left"


@pytest.fixture
def det():
    return parse_protection(SPEC).detector(Key.from_text("selection-test"))


def test_the_selection_scores_first_occurrences_in_text_order(det):
    texts = [[5, 6, 5, 6, 5, 6, 7], [5, 6, 8]]  # (5, 6) and (6, 5) repeat; text 2 shares (5, 6)
    pooled, own = det.select(texts, [[1], [1]]), det.select(texts, [[1], [1]], per_sequence=True)
    for s in (pooled, own):
        assert np.all(np.diff(s.scored) > 0) and len(np.unique(s.ident[s.scored])) == len(s.scored)
        assert np.array_equal(s.draws, s.inputs[s.scored]) and np.array_equal(s.owner, s.windows.seq_index[s.scored])
    # windows: (1,5) (5,6) (6,5) (5,6) (6,5) (5,6) (6,7) | (1,5) (5,6) (6,8)
    assert pooled.scored.tolist() == [0, 1, 2, 6, 9]  # the second text's (1,5), (5,6) were seen before
    assert own.scored.tolist() == [0, 1, 2, 6, 7, 8, 9]
    assert own.repeats().tolist() == [1, 3, 2, 1, 1, 1, 1]
    assert pooled.repeats().tolist() == [2, 4, 2, 1, 1]


def test_weights_are_window_weights_times_repeats(det):
    texts = [[5, 6, 5, 6, 5, 6, 7]]
    s = det.select(texts, [[1]])
    assert s.weights() is None  # a plain sum
    w = np.arange(1.0, 8.0)  # one per completion window
    assert s.weights(w).tolist() == w[s.scored].tolist()
    assert s.weights(w, count_repeats=True).tolist() == (w[s.scored] * s.repeats()).tolist()
    with pytest.raises(UserError, match="weights have 3 entries for 7 completion windows"):
        s.weights(np.ones(3))
    # detect's count_repeats verdict is the weighted verdict of these weights
    scores = det.tuple_scores(s.draws)
    assert det.detect(texts, [[1]], count_repeats=True) == det.weighted_verdict(scores, s.repeats(), n_tuples=7)


def test_without_dedup_every_kept_window_is_one_draw(det):
    with pytest.warns(UserWarning, match="dedup=False"):
        s = det.select([[5, 6, 5, 6]], [[1]], dedup=False)
    assert s.scored.tolist() == [0, 1, 2, 3] and s.repeats().tolist() == [1, 1, 1, 1]
    assert s.weights(count_repeats=True) is None


def test_keep_and_reference_leave_windows_out(det):
    texts = [[5, 6, 7, 8]]
    keep = np.array([True, False, True, True])
    s = det.select(texts, [[1]], keep=keep, reference=[[6, 7]], per_sequence=True)
    assert not s.kept[1] and s.referenced.tolist() == [2]  # (6, 7) occurs in the reference
    assert s.scored.tolist() == [0, 3]
