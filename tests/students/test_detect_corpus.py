"""`antidistill detect` takes a corpus folder: each completion scored with its prompt."""
import json

from antidistill.eval.cli import main

KGW = "kgw:gamma=0.25,delta=2,h=1,hash=left"


def test_detect_reads_a_corpus_folder(corpora, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ANTIDISTILL_KEY", "students-test-key")
    for name, verdict in (("kgw", "pooled: WATERMARKED"), ("raw", "pooled: NOT DETECTED")):
        out = tmp_path / f"{name}.jsonl"
        assert main(["detect", "--protection", KGW, str(corpora[name]), "--out", str(out), "--pooled"]) == 0
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert len(rows) == 64 and verdict in capsys.readouterr().out


def test_detect_with_a_reference_scores_choice_points(corpora, fast_teacher, cache_dir, tmp_path, capsys, monkeypatch):
    """--reference keeps only positions the unprotected teacher is unsure of; the raw corpus of the
    same prompts stays unflagged, with the exact tail and with the entropy-weighted bound."""
    from antidistill.students.models.teacher import teacher_dir

    from .conftest import FAST_TEACHER

    monkeypatch.setenv("ANTIDISTILL_KEY", "students-test-key")
    ref = str(teacher_dir(FAST_TEACHER, cache_dir))
    for extra in ([], ["--entropy-weight"]):
        for name, verdict in (("kgw", "pooled: WATERMARKED"), ("raw", "pooled: NOT DETECTED")):
            out = tmp_path / f"{name}.jsonl"
            assert main(["detect", "--protection", KGW, str(corpora[name]), "--out", str(out), "--pooled",
                         "--reference", ref, "--max-reference-prob", "0.9", *extra]) == 0
            printed = capsys.readouterr().out
            assert verdict in printed and "positions kept" in printed
            assert ("chernoff-bound" in printed) == bool(extra)


def test_reference_thresholds_need_a_reference(corpora, capsys, monkeypatch):
    monkeypatch.setenv("ANTIDISTILL_KEY", "students-test-key")
    assert main(["detect", "--protection", KGW, str(corpora["kgw"]), "--max-reference-prob", "0.5"]) == 2
    assert "needs --reference" in capsys.readouterr().err
