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
