"""Shared test helpers: randomised p-values that are exactly U(0,1) under H0, uniformity checks."""
import numpy as np
from scipy import stats

from antidistill.watermark.gumbel import GumbelDetector
from antidistill.watermark.kgw import KGWDetector
from antidistill.watermark.synthid import SynthIDDetector

SPECS = ["kgw:gamma=0.25,delta=2,h=1,hash=left", "kgw:gamma=0.25,delta=2,h=4,hash=self",
         "unigram:gamma=0.5,delta=2", "gumbel:h=2", "synthid:depth=16,h=4"]


def randomized_p(detector, detections, rng) -> np.ndarray:
    """P(S > s) + U * P(S = s): exactly uniform when the stated null law is right.

    The binomial p-values the detectors report, P(S >= s), are valid but discrete (conservative);
    randomising the atom makes a KS test against U(0,1) a sharp check of the null law itself.
    """
    stat = np.array([d.statistic for d in detections])
    n = np.array([d.n_scored for d in detections])
    if isinstance(detector, GumbelDetector):  # continuous; a text with nothing scored has p = 1: draw U
        return np.array([d.p_value if d.n_scored else rng.random() for d in detections])
    if isinstance(detector, SynthIDDetector):
        trials, q = n * detector.protection.depth, 0.5
    else:
        assert isinstance(detector, KGWDetector)
        trials, q = n, detector.protection.gamma_eff
    k = np.round(stat).astype(int)
    return stats.binom.sf(k, trials, q) + rng.random(len(k)) * stats.binom.pmf(k, trials, q)


def null_p_values(spec: str, seqs, prompts=None, per_key: int = 10, key_label: str = "null", seed: int = 0):
    """Randomised and reported p-values of texts written without the key, a fresh key per `per_key` texts.

    H0 is "the text is independent of a random secret key": one key for all texts would share one
    realised green list (for unigram, a fixed vocabulary split whose green fraction is not exactly
    gamma), so uniformity is a statement over keys.
    """
    from antidistill.watermark import Key, parse_protection

    protection = parse_protection(spec)
    rng = np.random.default_rng(seed)
    rand, actual = [], []
    for i in range(0, len(seqs), per_key):
        det = protection.detector(Key(f"{key_label} {i}".encode()))
        detections = det.detect_each(seqs[i:i + per_key], None if prompts is None else prompts[i:i + per_key])
        rand.append(randomized_p(det, detections, rng))
        actual += [d.p_value for d in detections]
    return np.concatenate(rand), np.array(actual)


def assert_uniform(p: np.ndarray, actual: np.ndarray | None = None):
    """KS against U(0,1), and false-positive rates at 1e-2 and 1e-3 inside their 99% binomial intervals.

    `actual` (the reported, non-randomised p-values) may only be more conservative.
    """
    assert stats.kstest(p, "uniform").pvalue > 1e-3, "p-values are not uniform under H0"
    for alpha in (1e-2, 1e-3):
        lo, hi = stats.binom.interval(0.99, len(p), alpha)
        hits = int((p <= alpha).sum())
        assert lo <= hits <= hi, f"FPR at alpha={alpha}: {hits}/{len(p)} outside [{lo}, {hi}]"
        if actual is not None:
            assert int((actual <= alpha).sum()) <= hi
