"""models.check_model_dir / resolve_model: an incomplete model directory is refused in one line before a run
writes anything (file names only: nothing is loaded, no torch)."""

import json

import pytest

from selfreward.config import ModelConfig
from selfreward.errors import UserError
from selfreward.models import check_model_dir, resolve_model


def model_dir(tmp_path, *names, name="m"):
    d = tmp_path / name
    d.mkdir()
    for n in names:
        (d / n).write_text("{}")
    return d


def error(path, trust_remote_code=False) -> str:
    with pytest.raises(UserError) as e:
        resolve_model(ModelConfig(name=str(path), trust_remote_code=trust_remote_code))
    assert "\n" not in str(e.value)
    return str(e.value)


def test_complete_directories_pass(tmp_path):
    for i, files in enumerate([("config.json", "tokenizer.json", "model.safetensors"),
                               ("config.json", "tokenizer.model", "model.safetensors"),
                               ("config.json", "vocab.json", "merges.txt", "model.safetensors")]):
        d = model_dir(tmp_path, *files, name=f"m{i}")
        assert resolve_model(ModelConfig(name=str(d))) == str(d)


def test_only_config_json(tmp_path):
    """Regression: "ValueError: Couldn't instantiate the backend tokenizer" after 38 lines of traceback."""
    d = model_dir(tmp_path, "config.json")
    assert error(d).startswith(f"model path {d} has no tokenizer files (tokenizer.json, tokenizer.model, or "
                               "vocab.json with merges.txt); point model.name at a directory written by "
                               "save_pretrained")


def test_tokenizer_without_weights(tmp_path):
    """Regression: crashed in stages/training.py after config.yaml and manifest.json were written."""
    d = model_dir(tmp_path, "config.json", "tokenizer.json", "tokenizer_config.json")
    assert error(d).startswith(f"model path {d} has no weights (model.safetensors or model.safetensors.index.json")
    (d / "pytorch_model.bin").write_text("")
    assert error(d).startswith(f"model path {d} has only .bin weights")


def test_vocab_json_needs_merges(tmp_path):
    d = model_dir(tmp_path, "config.json", "vocab.json", "model.safetensors")
    assert "has no tokenizer files" in error(d)


def test_no_config_json_and_not_a_directory(tmp_path):
    d = model_dir(tmp_path, "tokenizer.json", "model.safetensors")
    assert error(d).startswith(f"model path {d} has no config.json")
    f = tmp_path / "model.safetensors"
    f.write_text("")
    assert error(f).startswith(f"model path {f} is not a directory")


def test_sharded_weights(tmp_path):
    d = model_dir(tmp_path, "config.json", "tokenizer.json")
    index = d / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"a": "model-1-of-2.safetensors", "b": "model-2-of-2.safetensors"}}))
    (d / "model-1-of-2.safetensors").write_text("")
    assert error(d).startswith(f"model path {d} lacks 1 of the 2 weight shards its index names "
                               "(first: model-2-of-2.safetensors)")
    (d / "model-2-of-2.safetensors").write_text("")
    check_model_dir(d)
    index.write_text("[1, 2")
    assert error(d) == f"{index}: not a safetensors index (a JSON object with a weight_map)"


def test_remote_code_tokenizers_and_adapters_are_not_second_guessed(tmp_path):
    d = model_dir(tmp_path, "config.json", "model.safetensors", "qwen.tiktoken.custom")
    assert "no tokenizer files" in error(d)
    check_model_dir(d, trust_remote_code=True)
    a = model_dir(tmp_path, "config.json", "adapter_config.json", "adapter_model.safetensors", name="adapter")
    check_model_dir(a)
