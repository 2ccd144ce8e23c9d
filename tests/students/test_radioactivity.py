"""The end-to-end claim the bench rests on: a student distilled from a KGW-protected corpus of the demo
teacher carries the watermark into its own generations; one distilled from the raw corpus does not.

delta=4 rather than the default 2: with a ~480-token vocabulary, h=1 and greedy reading, only ~200
distinct (previous token, token) tuples survive dedup, and a delta=2 student's green share
(~0.37-0.40 measured) gives p between 1e-3 and 1e-6 from run to run — real, but too close to a
threshold for CI. delta=4 measured share 0.50, p ~ 1e-12, with the same teacher and student.
"""
import pytest

from antidistill.students.protect.generate import generate_corpus
from antidistill.students.training.distill import train_student
from antidistill.students.models.loader import load_model
from antidistill.students.batching import encode_prompts
from antidistill.students.models.sampling import generate_batch
from antidistill.students.tasks.suite import make_split
from antidistill.watermark import parse_protection

KGW4 = "kgw:gamma=0.25,delta=4,h=1,hash=left"


@pytest.mark.slow
def test_student_of_protected_corpus_is_watermarked_raw_student_is_not(fast_teacher, key, tmp_path):
    detector = parse_protection(KGW4).detector(key)
    prompts = make_split("test", 600)  # prompts the students never saw
    results = {}
    for name, spec in (("raw", "none"), ("kgw", KGW4)):
        corpus = tmp_path / f"corpus-{name}"
        generate_corpus(fast_teacher, corpus, protection=spec, key=key, prompts=256, max_new_tokens=96,
                        batch_size=64, shard_size=64, progress=False, teacher_name="fast-demo")
        train_student("tiny", corpus, tmp_path / f"student-{name}", max_steps=300, batch_size=16, progress=False,
                      save_steps=10_000, seed=0)
        student, tok = load_model(str(tmp_path / f"student-{name}"))
        ids = encode_prompts(tok, [e.prompt for e in prompts])
        seqs, ctx = [], []
        for b in range(0, len(ids), 200):
            # Greedy reading: the student's top choices carry the learned green bias; sampled reading
            # adds low-probability (window, token) tuples that dilute it after dedup.
            out = generate_batch(student, tok, ids[b:b + 200], max_new_tokens=96, do_sample=False)
            seqs += out.completions
            ctx += ids[b:b + 200]
        results[name] = detector.detect(seqs, ctx)
    # The student reading is a p-value of its own (deduplicated) generations against the key.
    assert results["kgw"].log10_p < -8, results
    assert results["raw"].log10_p > -3, results
    assert results["kgw"].statistic / results["kgw"].n_scored > 0.4  # green share well above gamma=0.25
