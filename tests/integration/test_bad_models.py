"""A model directory that passes the file check but does not load: every loader says so in one line naming the
path (a UserError), never a 38-line ValueError from inside transformers."""

from __future__ import annotations

import shutil

import pytest

from selfreward.errors import UserError


@pytest.fixture
def broken(tmp_path, tiny_model_dir):
    """The tiny model with its tokenizer and weights replaced by garbage of the right names."""
    d = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, d)
    return d


def one_line(e: pytest.ExceptionInfo, path) -> str:
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg, msg
    return msg


def test_damaged_tokenizer(broken):
    from selfreward.models import load_tokenizer

    (broken / "tokenizer.json").write_text("{}")
    with pytest.raises(UserError) as e:
        load_tokenizer(str(broken))
    assert one_line(e, broken).startswith(f"could not load the tokenizer of '{broken}': ")


def test_damaged_weights(broken):
    import torch

    from selfreward.config import load_config
    from selfreward.models import load_model
    from selfreward.stages.training import load_trainable

    (broken / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(UserError) as e:
        load_model(str(broken), torch.float32, device="cpu")
    assert one_line(e, broken).startswith(f"could not load model '{broken}': ")
    with pytest.raises(UserError) as e:
        load_trainable(str(broken), load_config(None))
    assert one_line(e, broken).startswith(f"could not load model '{broken}' for training: ")


def test_tokenizer_only_directory_fails_before_the_run_directory_is_written(tmp_path, tiny_model_dir, capsys):
    """Regression: a tokenizer without weights crashed `run` in stages/training.py after config.yaml and
    manifest.json had been written."""
    from integration_helpers import run_overrides
    from selfreward import cli

    d = tmp_path / "tokenizer-only"
    d.mkdir()
    for p in tiny_model_dir.iterdir():
        if not p.name.endswith(".safetensors"):
            shutil.copy(p, d / p.name)
    run_dir = tmp_path / "run"
    rc = cli.main(["run", "--config", "tiny-cpu", "--run-dir", str(run_dir), *run_overrides(tiny_model_dir),
                   f"model.name={d}"])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith(f"selfreward: error: model path {d} has no weights") and err.count("\n") == 1
    assert not run_dir.exists()
