"""Helpers shared by the integration tests (imported by conftest.py and the test modules)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "src" / "selfreward" / "recipes" / "tiny-cpu.yaml"
SELFREWARD_BIN = Path(sys.executable).with_name("selfreward")

# Settings that keep the whole loop to seconds on 2 CPU cores. fp32 everywhere so runs are deterministic. The
# values the tests assert on (n, k, temperatures, batch sizes, iterations) are pinned here rather than taken from
# the recipe, so that tuning tiny-cpu.yaml does not break them.
FAST = [
    "iterations=2",
    "seed=0",
    "model.dtype=float32",
    "data.max_ift=8",
    "data.max_eft=8",
    "sft.batch_size=4",
    "sft.epochs=1",
    "gen_prompts.num_prompts=3",
    "gen_prompts.max_new_tokens=12",
    "sample.n=4",
    "sample.temperature=0.7",
    "sample.top_p=0.9",
    "sample.max_new_tokens=12",
    "judge.k=3",
    "judge.temperature=0.7",
    "judge.top_p=0.9",
    "judge.max_new_tokens=12",
    "judge.backend=fake",
    "judge_eval.max_prompts=2",  # eval-judge of M0..M3 on 2 prompts (7 responses) of the builtin eft_eval
    "eval.suites=[ifeval]",
    "eval.max_prompts=2",  # IFEval of M1..M3 on 2 prompts
    "eval.compare_prompts=2",  # iteration 1 holds back 2 generated prompts for compare (M2), (M3)
    "eval.judge_check_pairs=4",  # compare (M2), (M3): their judge on 4 LLMBar Natural pairs
    "eval.max_new_tokens=12",
    "sft.max_length=768",
    "sft.mixed_precision=fp32",
    "dpo.max_length=256",
    "dpo.mixed_precision=fp32",
    "dpo.batch_size=4",
    "dpo.epochs=1",
    # all weights trained, at full training's rates: the library's default (tiny-cpu trains LoRA adapters, tested
    # in test_checkpoints and the e2e run)
    "sft.lora=null",
    "dpo.lora=null",
    "sft.learning_rate=1e-4",
    "sft.min_learning_rate=2e-5",
    "dpo.learning_rate=5e-6",
    "dpo.min_learning_rate=5e-7",
    # in this process, as the tests patch and measure it (tiny-cpu starts a process per stage: test_stage_processes)
    "stage_processes=false",
]

STAGE_NAMES = ["gen-prompts", "sample", "judge", "pairs", "dpo"]


def save_tiny_llama(out: Path, tokenizer, tie_word_embeddings: bool = True) -> Path:
    """A 2-layer, 32-wide random Llama over the real chat tokenizer, saved as safetensors with that tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=len(tokenizer), max_position_embeddings=1024, tie_word_embeddings=tie_word_embeddings,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


# --- fake judge --------------------------------------------------------------------------------------------------
# Every run here judges through the registered fake backend (judge.backend=fake, in FAST): a random model never
# writes "Score: N". Judgment j of request i of a call reads "Looks fine. Score: (i+j) % 6", so the k judgments of a
# candidate differ and the candidates of one prompt get different mean scores (pairs exist, deterministically); a
# pairwise request always gets "[[A]]", the position bias that must come out as ties. See selfreward.backends.fake.


def fake_calls(method: str = "generate", desc: str = "") -> list[dict]:
    """The fake backend's calls in this process so far, of one method, whose desc starts with `desc`."""
    from selfreward.backends import fake

    return [c for c in fake.CALLS if c["method"] == method and c["desc"].startswith(desc)]


def clear_fake_calls() -> None:
    from selfreward.backends import fake

    fake.CALLS.clear()


def fake_scores(n: int, k: int = 3) -> list[float]:
    """The mean FakeJudge score of each of n requests judged in one call, k judgments each."""
    return [sum((i + j) % 6 for j in range(k)) / k for i in range(n)]


# --- run helpers ---------------------------------------------------------------------------------------------------

def run_overrides(model_dir: Path, *extra: str) -> list[str]:
    return [f"model.name={model_dir}", *FAST, *extra]


def load_cfg(model_dir: Path, *extra: str):
    from selfreward.config import load_config

    return load_config(RECIPE, run_overrides(model_dir, *extra))


def run_cfg(run_dir: Path, *extra: str):
    """The config a resumed `selfreward run --run-dir RUN [overrides]` uses: the run's own config.yaml."""
    from selfreward.config import load_config

    return load_config(Path(run_dir) / "config.yaml", list(extra))


def tokens(run_dir: Path) -> dict[str, str]:
    """{'sft/sft': token, 'iter1/sample': token, 'eval/judge-M0': token, ...} for every done-marker in a run."""
    out = {}
    for path in sorted(Path(run_dir).glob("*/*.done.json")):
        out[f"{path.parent.name}/{path.name.removesuffix('.done.json')}"] = json.loads(path.read_text())["token"]
    return out


def all_stage_keys(iterations: int) -> list[str]:
    """The loop's markers, in chain order (each stage reads the one before)."""
    return ["sft/sft"] + [f"iter{t}/{s}" for t in range(1, iterations + 1) for s in STAGE_NAMES]


def eval_keys(iterations: int) -> list[str]:
    """The evaluation markers: eval-judge of M0 (the base model) to M_{T+1}, eval of M1 to M_{T+1}, compare of
    M2 to M_{T+1}."""
    return ([f"eval/judge-M{t}" for t in range(iterations + 2)] + [f"eval/eval-M{t}" for t in range(1, iterations + 2)]
            + [f"eval/compare-M{t}" for t in range(2, iterations + 2)])
