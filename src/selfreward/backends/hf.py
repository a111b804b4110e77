"""transformers backend: length-sorted batches, n completions from one prefill, back-off on out-of-memory."""

from __future__ import annotations

import gc

import torch
from tqdm.auto import tqdm

from selfreward.backends import Message, Sampling
from selfreward.models import load_model, load_tokenizer


class HFGenerator:
    def __init__(self, model_path: str, dtype: torch.dtype = torch.float32, batch_size: int = 16,
                 trust_remote_code: bool = False):
        self.tokenizer = load_tokenizer(model_path, trust_remote_code, padding_side="left")
        self.model = load_model(model_path, dtype, trust_remote_code)
        self.batch_size = batch_size

    def generate(self, requests: list[list[Message]], sampling: Sampling, desc: str = "") -> list[list[str]]:
        torch.manual_seed(sampling.seed)
        encoded = [self._encode(msgs) for msgs in requests]
        # Longest first: similar lengths share a batch (little padding), and an out-of-memory shows up at once.
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
        per_batch = max(1, self.batch_size // sampling.n)
        results: list[list[str] | None] = [None] * len(encoded)
        done = 0
        with tqdm(total=len(encoded), desc=desc or "generate", unit="req", dynamic_ncols=True) as bar:
            while done < len(order):
                chunk = order[done:done + per_batch]
                try:
                    texts = self._generate_batch([encoded[i] for i in chunk], sampling)
                except torch.OutOfMemoryError:
                    if per_batch == 1:
                        raise
                    per_batch //= 2
                    gc.collect()
                    torch.cuda.empty_cache()
                    bar.write(f"out of memory: retrying with {per_batch} requests per batch")
                    continue
                for i, outs in zip(chunk, texts):
                    results[i] = outs
                done += len(chunk)
                bar.update(len(chunk))
        return results  # type: ignore[return-value]

    def _encode(self, messages: list[Message]) -> list[int]:
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    @torch.inference_mode()
    def _generate_batch(self, batch: list[list[int]], sampling: Sampling) -> list[list[str]]:
        width = max(len(ids) for ids in batch)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in batch], device=self.model.device)
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in batch], device=self.model.device)
        sample = sampling.temperature > 0
        # Greedy decoding gives the same text n times: decode once and repeat it.
        n = sampling.n if sample else 1
        out = self.model.generate(
            input_ids=input_ids, attention_mask=mask, max_new_tokens=sampling.max_new_tokens,
            do_sample=sample, temperature=sampling.temperature if sample else None,
            top_p=sampling.top_p if sample else None, top_k=None, num_return_sequences=n, pad_token_id=pad,
        )
        texts = [t.strip() for t in self.tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)]
        return [texts[i * n:(i + 1) * n] * (sampling.n // n) for i in range(len(batch))]

    def close(self) -> None:
        del self.model
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
