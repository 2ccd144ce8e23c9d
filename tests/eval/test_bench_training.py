"""The training roofline bench: its FLOP count against a hand computation, one minimal run end to end,
bad input refused in one line. Nothing here is timed: the bench measures, the tests only check shapes."""
import pandas as pd
import pytest
from transformers import LlamaConfig

from antidistill.eval.bench import training as bench


def config(**kw):
    return LlamaConfig(vocab_size=10, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=16, **kw)


def test_flop_count_by_hand():
    cfg = config()
    # per layer q, k, v, o 8x8 = 4 * 64, MLP gate, up 8x16 and down 16x8 = 3 * 128; lm_head 8x10
    assert bench.matmul_params(cfg) == 2 * (4 * 64 + 3 * 128) + 80 == 1360
    # 6 P tokens + 12 layers d_attn sum(s^2), sequences of 3 and 5 tokens
    assert bench.step_flops(cfg, [3, 5]) == 6 * 1360 * 8 + 12 * 2 * 8 * (9 + 25) == 71808
    # grouped-query attention: k and v map 8 -> 4 (1 kv head of dim 4)
    assert bench.matmul_params(config(num_key_value_heads=1)) == 2 * (64 + 32 + 32 + 64 + 3 * 128) + 80


def test_gemm_set_adds_up_to_the_count():
    """The GEMMs timed for the matmul rate are exactly the FLOPs counted for a padded batch."""
    cfg = config(num_key_value_heads=1)
    total = sum(n * bench.gemm_flops(a, b) for _, a, b, n in bench.gemm_set(cfg, batch=3, width=7))
    assert total == bench.step_flops(cfg, [7] * 3)


def test_padding_shares():
    assert bench.padding([2, 4, 3, 3], 2) == (2 * 4 + 2 * 3, 12)
    assert bench.padding(sorted([2, 4, 3, 3]), 2) == (2 * 3 + 2 * 4, 12)


def test_minimal_run_writes_csv_and_md(tmp_path, monkeypatch):
    monkeypatch.setenv("ANTIDISTILL_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "bench"
    argv = ["--shapes", "tiny", "--steps", "1", "--warmup", "1", "--repeats", "1", "--threads", "1",
            "--out", str(out)]
    assert bench.main(argv) == 0
    df = pd.read_csv(out / "training.csv")
    assert list(df.columns) == list(bench.COLUMNS)
    r = df.iloc[0]
    assert r["shape"] == "tiny" and r["batch"] == 32 and r["threads"] == 1
    assert 0 < r["tokens_useful"] <= r["tokens_executed"] and 0 <= r["padding_share_sorted"] <= r["padding_share"] < 1
    for col in ("matmul_gflops", "bare_steps_s", "trainer_steps_s", "bare_gflops", "loss_ms", "save_ms"):
        assert r[col] > 0, col
    text = (out / "training.md").read_text()
    assert "python -m antidistill.eval.bench.training" in text and "`tiny`" in text
    assert "Trainer/bare" in text and "## Machine" in text and "torch_threads: 1" in text


@pytest.mark.parametrize("argv, what", [
    (["--shapes", "foo"], "unknown shape 'foo'"),
    (["--shapes", ","], "unknown shape"),
    (["--steps", "0"], "--steps"),
    (["--warmup", "-1"], "--warmup"),
])
def test_bad_input_is_one_line(tmp_path, capsys, argv, what):
    with pytest.raises(SystemExit) as exc:
        bench.main([*argv, "--out", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert what in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "training.csv").exists()


def test_batch_larger_than_the_corpus_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main(["--shapes", "tiny", "--batch-size", "100000", "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert "--batch-size 100000" in capsys.readouterr().err
    assert not (tmp_path / "training.csv").exists()


def test_contention_rows_and_section(tmp_path, monkeypatch):
    """`--contention`: the first shape's bare loop alone and beside a spinning process, one row per
    thread count, a section in training.md, and the spinner gone afterwards (no timing asserted)."""
    import multiprocessing

    monkeypatch.setenv("ANTIDISTILL_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "bench"
    argv = ["--shapes", "tiny", "--steps", "1", "--warmup", "0", "--repeats", "1", "--threads", "1",
            "--contention", "--out", str(out)]
    assert bench.main(argv) == 0
    df = pd.read_csv(out / "training_contention.csv")
    assert list(df.threads) == [1] and (df.idle_steps_s > 0).all() and (df.contended_steps_s > 0).all()
    assert "## Beside another CPU-bound process" in (out / "training.md").read_text()
    assert not multiprocessing.active_children()
