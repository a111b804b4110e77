"""Any GGUF file as a model: converted once into a dense safetensors checkpoint, cached by the file's sha256.

model.name, judge.model and eval.judge may name a `.gguf` file (selfreward.models.resolve_model routes it here).
transformers reads GGUF for a set of architectures (llama, mistral, qwen2, qwen3, phi3, gemma2/3, ...: its
GGUF_SUPPORTED_ARCHITECTURES) and de-quantizes the weights to a dense model that is still flagged as quantized,
which blocks saving and training; the flag is cleared and the dense weights are written once, in float32 (the
de-quantized values exactly; callers pick their own dtype when loading), with the tokenizer and its chat template,
into CACHE/gguf/<sha256 of the file>/. The same bytes under another name or folder are found by their hash and
never converted twice. Hashing a large file takes seconds, so the hash of a path is remembered by (path, size,
modification time) in CACHE/gguf/hashes.json.

An architecture transformers cannot read from GGUF is refused before anything is loaded, in one line naming it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from selfreward.errors import UserError

HASHES = "hashes.json"
# llama.cpp's architecture names that transformers reads under another name (modeling_gguf_pytorch_utils).
_ALIASES = {"qwen2moe": "qwen2_moe", "qwen3moe": "qwen3_moe", "gpt-oss": "gpt_oss", "minimax-m2": "minimax_m2",
            "t5encoder": "t5"}


def is_gguf(name: str) -> bool:
    return name.lower().endswith(".gguf")


def gguf_model_dir(path: Path, cache: Path) -> Path:
    """The converted checkpoint of the GGUF file `path` under `cache` (the model cache root), converting it the
    first time."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"GGUF file not found: {path}")
    digest = file_sha256(path, cache)
    target = cache / "gguf" / digest
    if (target / "config.json").is_file():
        return target
    arch = architecture(path)
    convert(path, target, arch, digest)
    return target


def sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: Path, cache: Path) -> str:
    """sha256 of the file, remembered by (resolved path, size, mtime) in CACHE/gguf/hashes.json."""
    path = path.resolve()
    st = path.stat()
    index_path = cache / "gguf" / HASHES
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
        if not isinstance(index, dict):
            index = {}
    except (OSError, ValueError):
        index = {}
    known = index.get(str(path))
    if isinstance(known, dict) and known.get("size") == st.st_size and known.get("mtime_ns") == st.st_mtime_ns \
            and isinstance(known.get("sha256"), str):
        return known["sha256"]
    digest = sha256(path)
    index[str(path)] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
    index_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = index_path.with_name(f"{HASHES}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(index, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, index_path)
    return digest


def architecture(path: Path) -> str:
    """general.architecture of the file; a UserError unless transformers can read that architecture from GGUF."""
    from gguf import GGUFReader
    from transformers import __version__ as transformers_version
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    try:
        field = GGUFReader(str(path)).fields.get("general.architecture")
        arch = field.contents() if field is not None else None
    except Exception as e:  # a truncated or foreign file raises ValueError, struct errors, ...: all one line
        raise UserError(f"{path} is not a readable GGUF file ({type(e).__name__}: {_first_line(e)})") from None
    if not isinstance(arch, str):
        raise UserError(f"{path}: a GGUF file without general.architecture; cannot tell which model it holds")
    if arch not in GGUF_SUPPORTED_ARCHITECTURES and _ALIASES.get(arch) not in GGUF_SUPPORTED_ARCHITECTURES:
        raise UserError(f"{path}: architecture '{arch}' cannot be read from GGUF by transformers "
                        f"{transformers_version} (it reads: {', '.join(sorted(GGUF_SUPPORTED_ARCHITECTURES))})")
    return arch


def convert(path: Path, target: Path, arch: str = "?", digest: str | None = None) -> None:
    """The dense float32 safetensors checkpoint (with tokenizer) of a GGUF file, written to `target` atomically."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"Converting {path.name} ({arch}) to a dense safetensors checkpoint in {target} (once)...", flush=True)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    except (OSError, ValueError, KeyError, NotImplementedError, RuntimeError) as e:
        raise UserError(f"could not convert {path} (architecture {arch}): {type(e).__name__}: "
                        f"{_first_line(e)}") from None
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    tmp = target.with_name(target.name + f".{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / "gguf_source.json").write_text(json.dumps({"file": path.name, "sha256": digest, "architecture": arch},
                                                     indent=1), encoding="utf-8")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else type(e).__name__
