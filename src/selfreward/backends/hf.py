"""transformers backend: length-sorted batches, n completions from one prefill, back-off on out-of-memory."""

from __future__ import annotations

import gc

import torch
from tqdm.auto import tqdm

from selfreward.backends import Message, Sampling
from selfreward.errors import UserError
from selfreward.judge import neutralize
from selfreward.models import load_model, load_tokenizer


class HFGenerator:
    def __init__(self, model_path: str, dtype: torch.dtype = torch.float32, batch_size: int = 16,
                 trust_remote_code: bool = False):
        self.tokenizer = load_tokenizer(model_path, trust_remote_code, padding_side="left")
        self.model = load_model(model_path, dtype, trust_remote_code)
        self.batch_size = batch_size
        # Message text must never turn into template structure: a response's "<|im_end|>" stays text.
        self._special = frozenset(self.tokenizer.all_special_tokens) | frozenset(self.tokenizer.get_added_vocab())

    def generate(self, requests: list[list[Message]], sampling: Sampling, desc: str = "") -> list[list[str]]:
        torch.manual_seed(sampling.seed)
        encoded = [self._encode(msgs) for msgs in requests]
        return _longest_first(encoded, max(1, self.batch_size // sampling.n),
                              lambda batch: self._generate_batch(batch, sampling), desc or "generate")

    def _encode(self, messages: list[Message]) -> list[int]:
        return self.tokenizer(self._prompt_text(messages), add_special_tokens=False)["input_ids"]

    def _prompt_text(self, messages: list[Message]) -> str:
        safe = [{**m, "content": neutralize(m["content"], self._special)} for m in messages]
        return self.tokenizer.apply_chat_template(safe, add_generation_prompt=True, tokenize=False)

    def option_probs(self, requests: list[list[Message]], prefixes: list[str], options: list[str],
                     desc: str = "") -> list[list[float]]:
        """P(option | prompt + the assistant's `prefix`) for every option; each option must be one token there."""
        rows = [self._split_options(self._prompt_text(m) + p, options) for m, p in zip(requests, prefixes)]
        wanted = sorted({k for _, opt_ids in rows for k in opt_ids})  # keep a few columns, not the vocabulary
        column = {k: j for j, k in enumerate(wanted)}
        probs = _longest_first([ids for ids, _ in rows], self.batch_size,
                               lambda batch: self._next_token_probs(batch)[:, wanted].tolist(), desc or "score")
        return [[p[column[k]] for k in opt_ids] for p, (_, opt_ids) in zip(probs, rows)]

    def _split_options(self, text: str, options: list[str]) -> tuple[list[int], list[int]]:
        """(prefix ids, one token id per option). Tries ' 4' after 'Score:' (one token in Llama-3-style
        vocabularies), then '4' after 'Score: ' (SmolLM2 and Llama-2 write the space as a token of its own)."""
        for prefix, opts in ((text, [" " + o for o in options]), (text + " ", options)):
            base = self.tokenizer(prefix, add_special_tokens=False)["input_ids"]
            ids = []
            for o in opts:
                full = self.tokenizer(prefix + o, add_special_tokens=False)["input_ids"]
                if full[:len(base)] != base or len(full) != len(base) + 1:
                    break
                ids.append(full[-1])
            else:
                return base, ids
        raise UserError(f"this tokenizer does not write each of {options} as one token after the judge's "
                        "'Score:'; use judge.mode=sample")

    @torch.inference_mode()
    def _next_token_probs(self, batch: list[list[int]]) -> torch.Tensor:
        width = max(len(ids) for ids in batch)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in batch], device=self.model.device)
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in batch], device=self.model.device)
        # Positions count real tokens only, as generate() does, so left padding does not shift them.
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                            logits_to_keep=1).logits[:, -1]
        return torch.softmax(logits.float(), dim=-1).cpu()

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


def _longest_first(encoded: list[list[int]], per_batch: int, run, desc: str) -> list:
    """run(batch of token ids) -> one result per item, over batches; results come back in input order.

    Longest first: similar lengths share a batch (little padding), and an out-of-memory shows up at once, where
    it halves the batch instead of ending the run.
    """
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    results: list = [None] * len(encoded)
    done = 0
    with tqdm(total=len(encoded), desc=desc, unit="req", dynamic_ncols=True) as bar:
        while done < len(order):
            chunk = order[done:done + per_batch]
            try:
                outs = run([encoded[i] for i in chunk])
            except torch.OutOfMemoryError:
                if per_batch == 1:
                    raise
                per_batch //= 2
                gc.collect()
                torch.cuda.empty_cache()
                bar.write(f"out of memory: retrying with {per_batch} requests per batch")
                continue
            for i, out in zip(chunk, outs):
                results[i] = out
            done += len(chunk)
            bar.update(len(chunk))
    return results
