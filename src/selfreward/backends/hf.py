"""transformers backend: length-sorted batches within a memory budget, n completions from one prefill, the prompt
prefix that all requests share (the judge's rubric) computed once, back-off on out-of-memory.

One batch, with P = the prefix all requests of the call share and S_i = request i's own tokens:

    prefix cache (P, batch of one, once per call) -> copied to the batch's rows
    prefill  [P][pads][S_i minus its last token]   once per request, whatever n
    repeat the cache n times -> generate() from each request's last token

The pads sit between the prefix and each request's own tokens; the attention mask hides them and positions are
counted over the mask, so every row sees exactly its unpadded sequence (tests compare against no reuse).
"""

from __future__ import annotations

import copy
import gc
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm
from transformers.cache_utils import DynamicCache, DynamicLayer

from selfreward import faults
from selfreward.backends import GENERATE, LOGPROBS, OPTION_PROBS, Completion, LogProb, Message, Sampling, texts
from selfreward.backends.chat import encode_chat, prompt_text
from selfreward.errors import UserError
from selfreward.models import load_model, load_tokenizer

# Share of the free memory one batch's cache and activations may take: the weights' working buffers, the
# tokenizer and, on a shared machine, the other processes need the rest. Estimates are rough; an out-of-memory
# still halves the batch.
BUDGET_SHARE = 0.5


@dataclass
class _Prefix:
    """Token ids every request of one call starts with, and their KV cache for a batch of one."""
    ids: list[int]
    cache: DynamicCache | None

    def for_rows(self, rows: int, config) -> DynamicCache:
        if self.cache is None:
            return DynamicCache(config=config)
        cache = copy.deepcopy(self.cache)  # the model extends a cache in place
        cache.batch_repeat_interleave(rows)
        return cache


_NO_PREFIX = _Prefix([], None)


class HFGenerator:
    capabilities = frozenset({GENERATE, OPTION_PROBS, LOGPROBS})

    def __init__(self, model_path: str, dtype: torch.dtype = torch.float32, batch_size: int = 16,
                 trust_remote_code: bool = False, reuse_prefix: bool = True, memory_budget: int | None = None,
                 chat_template: str | None = None):
        """batch_size: the most sequences per forward pass; memory_budget: bytes one batch may take (None: a share
        of the memory free at each call); reuse_prefix=False re-reads the shared prefix in every batch;
        chat_template: for a model without one (model.chat_template)."""
        self.tokenizer = load_tokenizer(model_path, trust_remote_code, padding_side="left", chat_template=chat_template)
        self.model = load_model(model_path, dtype, trust_remote_code)
        self.batch_size = batch_size
        self.memory_budget = memory_budget
        # A sliding window or a recurrent state would see pads placed inside the sequence, and a model that asks
        # for its own cache class would not take ours: those run generate() on plain left-padded batches.
        layers = DynamicCache(config=self.model.config).layers
        self._own_cache = (self.model.generation_config.cache_implementation is None
                           and all(type(layer) is DynamicLayer for layer in layers))
        self.reuse_prefix = reuse_prefix and self._own_cache
        eos = self.model.generation_config.eos_token_id
        self._eos_ids = sorted({*(eos if isinstance(eos, list) else [eos] if eos is not None else []),
                                self.tokenizer.eos_token_id} - {None})

    def generate(self, requests: list[list[Message]], sampling: Sampling, desc: str = "") -> list[list[str]]:
        return texts(self.complete(requests, sampling, desc))

    def complete(self, requests: list[list[Message]], sampling: Sampling, desc: str = "") -> list[list[Completion]]:
        torch.manual_seed(sampling.seed)
        # Greedy decoding gives the same text n times: decode once and repeat it.
        n = sampling.n if sampling.temperature > 0 else 1
        per_call = rows_per_call(n, self.batch_size)
        rounds = n // per_call
        encoded = [self._encode(msgs) for msgs in requests]
        prefix = self._shared_prefix(encoded)
        units = [ids[len(prefix.ids):] for ids in encoded for _ in range(rounds)]
        outs = _longest_first(units, max(1, self.batch_size // per_call),
                              lambda batch: self._generate_batch(prefix, batch, per_call, sampling), desc or "generate",
                              self._fit(len(prefix.ids), per_call, sampling.max_new_tokens))
        return [sum(outs[i * rounds:(i + 1) * rounds], []) * (sampling.n // n) for i in range(len(requests))]

    def _encode(self, messages: list[Message]) -> list[int]:
        # Message text must never turn into template structure: a response's "<|im_end|>" stays text.
        return encode_chat(self.tokenizer, messages)

    def _prompt_text(self, messages: list[Message]) -> str:
        return prompt_text(self.tokenizer, messages)

    def option_probs(self, requests: list[list[Message]], prefixes: list[str], options: list[str],
                     desc: str = "") -> list[list[float]]:
        """P(option | prompt + the assistant's `prefix`) for every option; each option must be one token there."""
        rows = [self._split_options(p, options, m) for m, p in zip(requests, prefixes)]
        wanted = sorted({k for _, opt_ids in rows for k in opt_ids})  # keep a few columns, not the vocabulary
        column = {k: j for j, k in enumerate(wanted)}
        prefix = self._shared_prefix([ids for ids, _ in rows])
        probs = _longest_first([ids[len(prefix.ids):] for ids, _ in rows], self.batch_size,
                               lambda batch: self._next_token_probs(prefix, batch)[:, wanted].tolist(),
                               desc or "score", self._fit(len(prefix.ids), 1, 0))
        return [[p[column[k]] for k in opt_ids] for p, (_, opt_ids) in zip(probs, rows)]

    def logprobs(self, requests: list[list[Message]], continuations: list[str], desc: str = "") -> list[LogProb]:
        """Summed log-probabilities of each continuation's tokens, read as the assistant's reply to its request."""
        prompts = [self._encode(m) for m in requests]
        seqs = [p + self.tokenizer(c, add_special_tokens=False, split_special_tokens=True)["input_ids"]
                for p, c in zip(prompts, continuations)]
        start = {id(s): len(p) for s, p in zip(seqs, prompts)}
        return _longest_first(seqs, self.batch_size, lambda batch: self._summed_logprobs(batch, [start[id(s)] for s in batch]),
                              desc or "log-probs", self._fit(0, 1, 0))

    @torch.inference_mode()
    def _summed_logprobs(self, batch: list[list[int]], starts: list[int]) -> list[LogProb]:
        width = max(len(s) for s in batch)
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([s + [pad] * (width - len(s)) for s in batch], device=self.model.device)
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in batch], device=self.model.device)
        logits = self.model(input_ids=ids, attention_mask=mask).logits
        out = []
        for row, (s, start) in enumerate(zip(batch, starts)):
            # the token at position i is predicted by the logits at i - 1
            step = torch.log_softmax(logits[row, start - 1:len(s) - 1].float(), dim=-1)
            out.append(LogProb(step.gather(-1, ids[row, start:len(s), None]).sum().item(), len(s) - start))
        return out

    def _split_options(self, text: str, options: list[str],
                       messages: list[Message] | None = None) -> tuple[list[int], list[int]]:
        """(ids of the prompt of `messages` followed by the assistant's `text`, one token id per option). Tries ' 4'
        after 'Score:' (one token in Llama-3-style vocabularies), then '4' after 'Score: ' (SmolLM2 and Llama-2 write
        the space as a token of its own). `text` is the judge's own output: plain text, as the messages are."""
        def encode(continuation: str) -> list[int]:
            if messages is None:
                return self.tokenizer(continuation, add_special_tokens=False, split_special_tokens=True)["input_ids"]
            return encode_chat(self.tokenizer, messages, continuation=continuation)

        for prefix, opts in ((text, [" " + o for o in options]), (text + " ", options)):
            base = encode(prefix)
            ids = []
            for o in opts:
                full = encode(prefix + o)
                if full[:len(base)] != base or len(full) != len(base) + 1:
                    break
                ids.append(full[-1])
            else:
                return base, ids
        raise UserError(f"this tokenizer does not write each of {options} as one token after the judge's "
                        "'Score:'; use judge.mode=sample")

    @torch.inference_mode()
    def _shared_prefix(self, encoded: list[list[int]]) -> _Prefix:
        """The longest token prefix all requests share (each keeps at least one token of its own), with its cache."""
        if not self.reuse_prefix or not encoded:
            return _NO_PREFIX
        first = encoded[0]
        length = min(len(ids) for ids in encoded) - 1
        for ids in encoded[1:]:
            length = next((i for i in range(length) if ids[i] != first[i]), length)
        if length < 1:
            return _NO_PREFIX
        cache = DynamicCache(config=self.model.config)
        self.model(input_ids=torch.tensor([first[:length]], device=self.model.device), past_key_values=cache,
                   logits_to_keep=1)
        return _Prefix(first[:length], cache)

    def _padded(self, prefix: _Prefix, batch: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(ids) for ids in batch)
        pad = self.tokenizer.pad_token_id
        p = len(prefix.ids)
        input_ids = [prefix.ids + [pad] * (width - len(ids)) + ids for ids in batch]
        mask = [[1] * p + [0] * (width - len(ids)) + [1] * len(ids) for ids in batch]
        return (torch.tensor(input_ids, device=self.model.device), torch.tensor(mask, device=self.model.device))

    def _prefill(self, prefix: _Prefix, input_ids: torch.Tensor, mask: torch.Tensor, end: int):
        """The cache of every row up to column `end` (the prefix's part copied, the rest computed), and the
        last-position logits."""
        cache = prefix.for_rows(input_ids.shape[0], self.model.config)
        start = len(prefix.ids)
        # Positions count real tokens only, as generate() does, so padding does not shift them.
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(input_ids=input_ids[:, start:end], attention_mask=mask[:, :end],
                         position_ids=positions[:, start:end], past_key_values=cache, logits_to_keep=1)
        return cache, out.logits[:, -1]

    @torch.inference_mode()
    def _next_token_probs(self, prefix: _Prefix, batch: list[list[int]]) -> torch.Tensor:
        input_ids, mask = self._padded(prefix, batch)
        _, logits = self._prefill(prefix, input_ids, mask, input_ids.shape[1])
        return torch.softmax(logits.float(), dim=-1).cpu()

    @torch.inference_mode()
    def _generate_batch(self, prefix: _Prefix, batch: list[list[int]], n: int,
                        sampling: Sampling) -> list[list[Completion]]:
        input_ids, mask = self._padded(prefix, batch)
        width = input_ids.shape[1]
        sample = sampling.temperature > 0
        kwargs = dict(max_new_tokens=sampling.max_new_tokens, do_sample=sample,
                      temperature=sampling.temperature if sample else None, top_p=sampling.top_p if sample else None,
                      top_k=None, pad_token_id=self.tokenizer.pad_token_id)
        if self._own_cache:
            # The prompt is read once per request; its n samples start from copies of that cache, and generate()
            # feeds only each row's last prompt token.
            cache = self._prefill(prefix, input_ids, mask, width - 1)[0] if width - 1 > len(prefix.ids) \
                else prefix.for_rows(len(batch), self.model.config)
            if n > 1:
                cache.batch_repeat_interleave(n)
            out = self.model.generate(input_ids=input_ids.repeat_interleave(n, 0),
                                      attention_mask=mask.repeat_interleave(n, 0), past_key_values=cache, **kwargs)
        else:
            out = self.model.generate(input_ids=input_ids, attention_mask=mask, num_return_sequences=n, **kwargs)
        new = out[:, width:]
        decoded = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        ended = torch.isin(new, torch.tensor(self._eos_ids, device=new.device)).any(dim=1).tolist()
        done = [Completion(t.strip(), e) for t, e in zip(decoded, ended)]
        return [done[i * n:(i + 1) * n] for i in range(len(batch))]

    def _fit(self, prefix_len: int, rows: int, new_tokens: int):
        """width -> the most requests of that length (beyond the prefix) one batch may hold, or None: no limit."""
        budget = self.memory_budget
        if budget is None:
            free = free_memory(self.model.device)
            if free is None:
                return None
            budget = free * BUDGET_SHARE
        c = self.model.config.get_text_config(decoder=True)
        heads = c.num_attention_heads
        head_dim = getattr(c, "head_dim", None) or c.hidden_size // heads
        item = self.model.dtype.itemsize
        kv_per_token = 2 * c.num_hidden_layers * (getattr(c, "num_key_value_heads", None) or heads) * head_dim * item
        inner = getattr(c, "intermediate_size", None) or 4 * c.hidden_size

        def fit(width: int) -> int:
            keys = prefix_len + width
            # the cache of n rows to the last new token, plus the prefill's peak: one layer's activations and
            # attention weights over the request's own tokens, and fp32 logits of the last position
            per_request = (rows * kv_per_token * (keys + new_tokens) + width * (4 * c.hidden_size + 3 * inner) * item
                           + heads * width * keys * 4 + rows * 2 * c.vocab_size * 4)
            return int(budget // per_request)

        return fit

    def close(self) -> None:
        del self.model
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def rows_per_call(n: int, batch_size: int) -> int:
    """Samples per request in one forward pass: the largest divisor of n within batch_size, so that a request's
    n samples come in equal rounds and a batch never exceeds batch_size sequences."""
    return max(d for d in range(1, n + 1) if n % d == 0 and d <= max(1, batch_size))


def free_memory(device: torch.device) -> int | None:
    """Bytes free now on the device: the GPU's, else the machine's available RAM (None where unknown)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def _out_of_memory(e: Exception) -> bool:
    # On the CPU an allocation failure is a plain RuntimeError.
    return isinstance(e, torch.OutOfMemoryError) or isinstance(e, RuntimeError) and "can't allocate memory" in str(e)


def _longest_first(encoded: list[list[int]], per_batch: int, run, desc: str, fit=None) -> list:
    """run(batch of token ids) -> one result per item, over batches; results come back in input order.

    Longest first: similar lengths share a batch (little padding), and an out-of-memory shows up at once, where
    it halves the batch instead of ending the run. fit(width) caps a batch whose longest item has that width.
    Batches are as few as the cap allows and of even size (10 items at 4 per batch: 4, 3, 3, not 4, 4, 2).
    """
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    results: list = [None] * len(encoded)
    done = 0
    with tqdm(total=len(encoded), desc=desc, unit="req", dynamic_ncols=True) as bar:
        while done < len(order):
            left = len(order) - done
            cap = per_batch if fit is None else max(1, min(per_batch, fit(len(encoded[order[done]]))))
            size = -(-left // -(-left // cap))  # ceil(left / number of batches still needed at this cap)
            chunk = order[done:done + size]
            faults.point("batch")  # SELFREWARD_KILL_AT=batch:STAGE:T@N (selfreward.faults)
            try:
                outs = run([encoded[i] for i in chunk])
            except (torch.OutOfMemoryError, RuntimeError) as e:
                if not _out_of_memory(e) or size == 1:
                    raise
                per_batch = size // 2
                gc.collect()
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                bar.write(f"out of memory: retrying with {per_batch} requests per batch")
                continue
            for i, out in zip(chunk, outs):
                results[i] = out
            done += len(chunk)
            bar.update(len(chunk))
    return results
