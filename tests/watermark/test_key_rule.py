"""One key rule for every command: --key-file, a config's [key] and $ANTIDISTILL_KEY; two sources that
differ are refused, a key file must be a regular file, and only fingerprints appear in messages."""
import os
import subprocess
import sys

import pytest

from antidistill.watermark import KEY_ENV, Key, UserError, load_key, resolve_key

DEMO = Key.from_text("public demo")


@pytest.fixture
def keys(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    (tmp_path / "a").write_text("secret-a\n")
    (tmp_path / "a2").write_bytes(b"secret-a")  # the same key without the newline
    (tmp_path / "b").write_text("secret-b")
    return tmp_path


def test_user_error_is_a_value_error():
    assert issubclass(UserError, ValueError)
    with pytest.raises(ValueError):
        load_key("/nonexistent/key")


@pytest.mark.parametrize("env,key_file,text,config_file,source,secret", [
    (None, "a", None, None, "key-file", b"secret-a"),
    ("secret-e", None, None, None, "env", b"secret-e"),
    (None, None, "secret-t", None, "text", b"secret-t"),
    (None, None, None, "b", "file", b"secret-b"),
    (None, None, None, None, "demo", b"public demo"),
    ("secret-a", "a", None, None, "key-file", b"secret-a"),  # two sources holding one key agree
    ("secret-b", None, None, "b", "file", b"secret-b"),
    ("secret-t", None, "secret-t", None, "text", b"secret-t"),
    ("", None, "secret-t", None, "text", b"secret-t"),  # an empty variable counts as unset
    (None, "a", None, "a2", "key-file", b"secret-a"),
])
def test_precedence_and_agreeing_sources(keys, monkeypatch, env, key_file, text, config_file, source, secret):
    if env is not None:
        monkeypatch.setenv(KEY_ENV, env)
    key, got = resolve_key(keys / key_file if key_file else None, text=text,
                           config_file=keys / config_file if config_file else None, default=DEMO)
    assert (got, key.secret) == (source, secret)


@pytest.mark.parametrize("env,key_file,text,config_file,names", [
    ("secret-e", "a", None, None, ("--key-file", f"${KEY_ENV}")),
    ("secret-e", None, "secret-t", None, ("[key] text", f"${KEY_ENV}")),
    ("secret-e", None, None, "b", ("[key] file", f"${KEY_ENV}")),
    (None, "a", "secret-t", None, ("--key-file", "[key] text")),
    (None, "a", None, "b", ("--key-file", "[key] file")),
])
def test_two_different_keys_are_refused_naming_both_by_fingerprint(keys, monkeypatch, env, key_file, text,
                                                                   config_file, names):
    if env is not None:
        monkeypatch.setenv(KEY_ENV, env)
    with pytest.raises(UserError) as err:
        resolve_key(keys / key_file if key_file else None, text=text,
                    config_file=keys / config_file if config_file else None, default=DEMO)
    msg = str(err.value)
    assert "two different watermark keys" in msg and all(n in msg for n in names) and "\n" not in msg
    assert "fingerprint" in msg and "secret-" not in msg


def test_a_config_giving_both_text_and_file_is_refused(keys):
    with pytest.raises(UserError, match="both text and file"):
        resolve_key(text="secret-a", config_file=keys / "a")  # even when they hold the same key


def test_no_key_without_a_default_is_refused(keys):
    with pytest.raises(UserError, match="no watermark key"):
        resolve_key()


@pytest.mark.parametrize("kind", ["fifo", "folder", "device"])
def test_a_key_file_must_be_a_regular_file(tmp_path, kind):
    """A FIFO would block open() forever: checked in a child process with a timeout, so a regression fails
    the test instead of hanging the suite."""
    if kind == "fifo":
        path = tmp_path / "key.fifo"
        os.mkfifo(path)
        match = "named pipe (FIFO), not a regular file"
    elif kind == "folder":
        path, match = tmp_path, "is a folder"
    else:
        if not os.path.exists("/dev/zero"):
            pytest.skip("no /dev/zero")
        path, match = "/dev/zero", "device or special file"
    code = ("import sys\nfrom antidistill.watermark import load_key, UserError\n"
            "try:\n    load_key(sys.argv[1])\nexcept UserError as e:\n    print(e)\n")
    env = {k: v for k, v in os.environ.items() if k != KEY_ENV}
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120,
                          env=env)
    assert match in done.stdout, done.stdout + done.stderr


def test_run_honours_the_environment_and_reports_only_the_source(tmp_path, monkeypatch):
    """`antidistill run` with $ANTIDISTILL_KEY set uses it (it used the public demo key), and a config whose
    [key] differs from the variable is refused before any stage starts."""
    from antidistill.eval.core.config import overlay
    from antidistill.eval.experiment.config import DEMO_KEY_TEXT, SMOKE, RunConfig, preset_config, public_config
    from antidistill.eval.experiment.runner import Runner

    monkeypatch.delenv(KEY_ENV, raising=False)
    r = Runner(preset_config("smoke"), tmp_path / "o", cache_dir=tmp_path / "c", quiet=True)
    assert (r.lab.key_source, r.lab.key) == ("demo", Key.from_text(DEMO_KEY_TEXT))
    monkeypatch.setenv(KEY_ENV, "run-env-secret")
    r = Runner(preset_config("smoke"), tmp_path / "o", cache_dir=tmp_path / "c", quiet=True)
    assert (r.lab.key_source, r.lab.key) == ("env", Key(b"run-env-secret"))
    public = public_config(r.cfg, r.lab.key, r.lab.key_source)
    assert public["key"] == {"fingerprint": r.lab.key.fingerprint, "source": "env", "file": ""}
    assert "run-env-secret" not in repr(public)
    cfg = overlay(RunConfig, SMOKE, {"key": {"text": "another secret"}})
    with pytest.raises(UserError, match="two different watermark keys"):
        Runner(cfg, tmp_path / "o", cache_dir=tmp_path / "c", quiet=True)
    assert not (tmp_path / "o").exists()
