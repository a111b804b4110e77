"""transformers backend: requests sorted by length and decoded in a continuous batch within a memory budget, n
completions from one prefill, the prompt prefix that all requests share (the judge's rubric) computed once, stop
strings, back-off on out-of-memory.

One call, with P = the prefix all requests share and S_i = request i's own tokens:

    prefix cache (P, batch of one, once per call) -> copied to the rows of each group of requests admitted
    prefill  [P][pads][S_i minus its last token]   once per request, whatever n
    repeat the cache n times -> decode from each request's last token, one token per running row per step

The pads sit between the prefix and each request's own tokens; the attention mask hides them and positions are
counted over the mask, so every row sees exactly its unpadded sequence (tests compare against no reuse). After the
prefill each row's pads move to the left end of its cache, so that a row's columns are the last ones; on a CPU,
where a decoding step's attention costs what reading the cache costs, rows attend in groups over only the columns
they use, and a long shared prefix (the rubric) is kept out of the rows' cache and read once for all of them
(selfreward.backends.row_groups, grouped_attention). bf16 linear layers run with their weights packed once for
oneDNN (selfreward.backends.cpu_pack).

Continuous batching: a row leaves the batch at the step it ends (end of sequence, a stop string, max_new_tokens):
the last running rows move into the places of those that ended, a copy of those rows' cache only. Requests still
waiting enter in groups (a quarter of the batch at least), since joining copies the batch's cache; cache columns
that no running row uses any more (pads, finished rows' tokens) are dropped then.

Sampling draws each row's tokens from a generator of its own, seeded by (seed, request, sample), so a completion
does not depend on which other requests share its batch, on the memory budget or on when rows leave, in exact
arithmetic; greedy decoding gives the tokens of a plain generate() on each unpadded prompt alone. Tests check both
in fp32. In bf16 on a CPU the kernels round differently with the batch's shape (rows, columns), and a token that
flips changes the rest of the text: the default model's sampled answers to 8 prompts, seed fixed, agreed on 4-8 of
32 between batch sizes 64 and 4 or 8, greedy ones on 2-8 of 8. The same call with the same settings gives the same
texts.

Models whose cache is not plain full attention (a sliding window, recurrent layers, a cache class of their own)
run generate() on plain left-padded batches instead, with stop strings as generate()'s stop_strings.
"""

from __future__ import annotations

import copy
import gc
import hashlib
from collections import deque
from dataclasses import dataclass, field, replace

import torch
from tqdm.auto import tqdm
from transformers.cache_utils import DynamicCache, DynamicLayer

from selfreward import faults
from selfreward.backends import (
    GENERATE,
    LOGPROBS,
    OPTION_PROBS,
    Completion,
    LogProb,
    Message,
    Sampling,
    grouped_attention,
    row_groups,
    sampler,
    stop_end,
    texts,
)
from selfreward.backends.chat import encode_chat, prompt_text
from selfreward.backends.cpu_pack import pack_linears
from selfreward.errors import UserError
from selfreward.models import load_model, load_tokenizer

# Share of the free memory one batch's cache and activations may take: the weights' working buffers, the
# tokenizer and, on a shared machine, the other processes need the rest. Estimates are rough; an out-of-memory
# still halves the batch.
BUDGET_SHARE = 0.5
# Waiting requests enter the batch in groups of at least this share of the batch: joining copies the batch's cache
# once, about what one decoding step costs.
ADMIT_SHARE = 0.25
SLACK = 64  # tokens a decoding cache has room for beyond its length (_SlackLayer)
# On a CPU a prefill of more tokens a forward pass is no faster per token and holds far more: the default model in
# bf16 read 2,527 tok/s at 2 x 1000 tokens a pass (activations 0.13 GB) and 1,688 tok/s at 32 x 1000 (1.8 GB).
CPU_PREFILL_TOKENS = 4096


@dataclass
class _Prefix:
    """Token ids every request of one call starts with, and their KV cache for a batch of one. shared: decoding
    keeps the prefix out of the rows' cache and attends over this one for all rows (grouped_attention)."""
    ids: list[int]
    cache: DynamicCache | None
    shared: bool = False

    def for_rows(self, rows: int, config) -> DynamicCache:
        if self.cache is None:
            return DynamicCache(config=config)
        cache = copy.deepcopy(self.cache)  # the model extends a cache in place
        cache.batch_repeat_interleave(rows)
        return cache


_NO_PREFIX = _Prefix([], None)


class _Unit(list):
    """One request's own token ids (after the shared prefix), decoded as `rows` rows: samples first_sample,
    first_sample + 1, ... of request `request`."""

    def __init__(self, ids: list[int], request: int, first_sample: int, rows: int):
        super().__init__(ids)
        self.request, self.first_sample, self.rows = request, first_sample, rows


@dataclass
class _Row:
    """One sequence being decoded: its unit, its sample number, its own random generator, the tokens so far."""
    unit: int
    sample: int
    rng: torch.Generator | None
    tokens: list[int] = field(default_factory=list)
    done: Completion | None = None


class _SlackLayer(DynamicLayer):
    """A DynamicLayer whose keys and values are views of buffers with room for SLACK more tokens: a decoding step
    writes its token's key and value into the buffer, where DynamicLayer copies the whole cache (torch.cat) at
    every step (for a batch of 30 judge rows, about 300 MB a step). Only a full buffer is copied, into one SLACK
    tokens longer."""

    def fill(self, parts: list[tuple[torch.Tensor, torch.Tensor, int]], rows: int, width: int) -> None:
        """New buffers of `rows` rows and `width` columns (+ SLACK): each (keys, values, first row) written at its
        rows, ending at column `width` (rows keep their columns at the right end: selfreward.backends.row_groups);
        the columns before a part's own are zeros (masked, but never NaN)."""
        k0 = parts[0][0]
        shape = (rows, k0.shape[1], width + SLACK, k0.shape[3])
        self._buffers = (k0.new_empty(shape), k0.new_empty(shape))
        for buffer, which in zip(self._buffers, (0, 1)):
            for part in parts:
                x, row = part[which], part[2]
                start = width - x.shape[2]
                buffer[row:row + x.shape[0], :, start:width] = x
                buffer[row:row + x.shape[0], :, :start].zero_()
        if not self.is_initialized:
            self.lazy_initialization(*self._buffers)
        self.keys, self.values = self._buffers[0][:, :, :width], self._buffers[1][:, :, :width]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        length = self.keys.shape[-2]
        end = length + key_states.shape[-2]
        if end > self._buffers[0].shape[-2]:
            self.fill([(self.keys, self.values, 0)], self.keys.shape[0], length)
        self._buffers[0][:, :, length:end] = key_states
        self._buffers[1][:, :, length:end] = value_states
        self.keys, self.values = self._buffers[0][:, :, :end], self._buffers[1][:, :, :end]
        return self.keys, self.values

    def keep_rows(self, moved: torch.Tensor, places: torch.Tensor, rows: int) -> None:
        """Rows `moved` copied into rows `places`, then the first `rows` rows only (views of the same buffers)."""
        length = self.keys.shape[-2]
        if len(moved):
            for buffer in self._buffers:
                buffer[places] = buffer[moved]
        self._buffers = (self._buffers[0][:rows], self._buffers[1][:rows])
        self.keys, self.values = self._buffers[0][:, :, :length], self._buffers[1][:, :, :length]


def _drop_first_columns(cache: DynamicCache, mask: torch.Tensor, count: int) -> torch.Tensor:
    """The cache without its first `count` columns (views); the mask that goes with it."""
    for layer in cache.layers:
        if layer.is_initialized and layer.keys.numel():
            layer.keys, layer.values = layer.keys[:, :, count:], layer.values[:, :, count:]
    return mask[:, count:]


def _pads_first(cache: DynamicCache, mask: torch.Tensor) -> torch.Tensor:
    """Each row's cached columns moved to the right end, in order, its pads ([P][pads][S_i] after a prefill) to the
    left: a row's attention does not depend on where its columns sit (positions were fixed at the prefill), and
    rows whose used columns end together can attend over only those (selfreward.backends.row_groups). The mask that
    goes with them."""
    if bool(mask.all()):
        return mask
    order = mask.sort(dim=1, stable=True).indices  # each row's pads first, then its own columns
    for layer in cache.layers:
        if layer.is_initialized and layer.keys.numel():
            index = order[:, None, :, None].expand_as(layer.keys)
            layer.keys, layer.values = layer.keys.gather(2, index), layer.values.gather(2, index)
    return mask.gather(1, order)


def _per_cpu_pass(prefix_len: int, width: int) -> int:
    """Requests of `width` own tokens (after a prefix of prefix_len) a CPU prefills in one pass: at least one."""
    return max(1, CPU_PREFILL_TOKENS // (prefix_len + width))


def row_seed(seed: int, request: int, sample: int) -> int:
    """The seed of one completion's generator: fixed by the call's seed, the request's place and the sample's."""
    digest = hashlib.blake2b(f"{seed}:{request}:{sample}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


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
        pack_linears(self.model)  # bf16 on a CPU only (selfreward.backends.cpu_pack)
        self.batch_size = batch_size
        self.memory_budget = memory_budget
        # A sliding window or a recurrent state would see pads placed inside the sequence, and a model that asks
        # for its own cache class would not take ours: those run generate() on plain left-padded batches.
        layers = DynamicCache(config=self.model.config).layers
        self._own_cache = (self.model.generation_config.cache_implementation is None
                           and all(type(layer) is DynamicLayer for layer in layers))
        self._grouped = self._own_cache and grouped_attention.install(self.model)
        self.reuse_prefix = reuse_prefix and self._own_cache
        eos = self.model.generation_config.eos_token_id
        self._eos_ids = sorted({*(eos if isinstance(eos, list) else [eos] if eos is not None else []),
                                self.tokenizer.eos_token_id} - {None})

    def generate(self, requests: list[list[Message]], sampling: Sampling, desc: str = "") -> list[list[str]]:
        return texts(self.complete(requests, sampling, desc))

    def complete(self, requests: list[list[Message]], sampling: Sampling, desc: str = "") -> list[list[Completion]]:
        # Greedy decoding gives the same text n times: decode once and repeat it.
        n = sampling.n if sampling.temperature > 0 else 1
        per_call = rows_per_call(n, self.batch_size)
        rounds = n // per_call
        encoded = [self._encode(msgs) for msgs in requests]
        prefix = self._shared_prefix(encoded)
        units = [_Unit(ids[len(prefix.ids):], i, r * per_call, per_call)
                 for i, ids in enumerate(encoded) for r in range(rounds)]
        fit = self._fit(len(prefix.ids), per_call, sampling.max_new_tokens)
        if self._shares(prefix, min(len(units) * per_call, self.batch_size)):
            prefix = replace(prefix, shared=True)
        if self._own_cache:
            outs = self._stream(prefix, units, sampling, desc or "generate", fit)
        else:
            torch.manual_seed(sampling.seed)
            outs = _longest_first(units, max(1, self.batch_size // per_call),
                                  lambda batch: self._generate_batch(prefix, batch, per_call, sampling),
                                  desc or "generate", fit)
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
                               desc or "score", self._per_pass(self._fit(len(prefix.ids), 1, 0), len(prefix.ids)))
        return [[p[column[k]] for k in opt_ids] for p, (_, opt_ids) in zip(probs, rows)]

    def logprobs(self, requests: list[list[Message]], continuations: list[str], desc: str = "") -> list[LogProb]:
        """Summed log-probabilities of each continuation's tokens, read as the assistant's reply to its request."""
        prompts = [self._encode(m) for m in requests]
        seqs = [p + self.tokenizer(c, add_special_tokens=False, split_special_tokens=True)["input_ids"]
                for p, c in zip(prompts, continuations)]
        start = {id(s): len(p) for s, p in zip(seqs, prompts)}
        return _longest_first(seqs, self.batch_size,
                              lambda batch: self._summed_logprobs(batch, [start[id(s)] for s in batch]),
                              desc or "log-probs", self._per_pass(self._fit(0, 1, 0, every_position=True), 0))

    @torch.inference_mode()
    def _summed_logprobs(self, batch: list[list[int]], starts: list[int]) -> list[LogProb]:
        """Left-padded, so that every continuation ends in the last column: the model computes the logits of the
        last `keep` positions only (the longest continuation's), not [rows, width, vocabulary]: for 32 EFT answers
        of the default model that was 3 GB of bf16 logits in one batch."""
        width = max(len(s) for s in batch)
        lengths = [len(s) - start for s, start in zip(batch, starts)]
        keep = max(lengths) + 1
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(s)) + s for s in batch], device=self.model.device)
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in batch], device=self.model.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # counted over real tokens, so the pads shift nothing
        logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=keep,
                            use_cache=False).logits
        out = []
        for row, n in enumerate(lengths):
            # the last n tokens are the continuation; a token is predicted by the logits one column before it
            step = torch.log_softmax(logits[row, keep - n - 1:keep - 1].float(), dim=-1)
            out.append(LogProb(step.gather(-1, ids[row, width - n:, None]).sum().item(), n))
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
        self.model(input_ids=torch.tensor([first[:length]], device=self.model.device), cache=cache, logits_to_keep=1)
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
                         position_ids=positions[:, start:end], cache=cache, logits_to_keep=1)
        return cache, out.logits[:, -1]

    @torch.inference_mode()
    def _next_token_probs(self, prefix: _Prefix, batch: list[list[int]]) -> torch.Tensor:
        input_ids, mask = self._padded(prefix, batch)
        _, logits = self._prefill(prefix, input_ids, mask, input_ids.shape[1])
        return torch.softmax(logits.float(), dim=-1).cpu()

    # --- continuous batching (models with a plain full-attention cache) -------------------------------------------

    def _stream(self, prefix: _Prefix, units: list[_Unit], sampling: Sampling, desc: str,
                fit=None) -> list[list[Completion]]:
        """Every unit's completions, in order. At most batch_size rows run at once (fewer where `fit`, the memory
        budget, caps the longest unit's width); an out-of-memory halves that and decodes again the units that had
        not ended (their completions do not depend on the batch)."""
        results: list = [None] * len(units)
        order = sorted(range(len(units)), key=lambda i: -len(units[i]))  # longest first: an OOM shows at once
        per_unit = units[0].rows if units else 1
        cap = max(1, self.batch_size // per_unit)
        with tqdm(total=len(units), desc=desc, unit="req", dynamic_ncols=True) as bar:
            while True:
                todo = [i for i in order if results[i] is None]
                if not todo:
                    return results
                limit = cap if fit is None else max(1, min(cap, fit(len(units[todo[0]]))))
                running = [0]
                try:
                    self._decode(prefix, units, todo, sampling, limit, results, bar, running)
                except (torch.OutOfMemoryError, RuntimeError) as e:
                    if not _out_of_memory(e) or running[0] <= 1:
                        raise
                    cap = running[0] // 2
                    gc.collect()
                    if torch.cuda.is_available():
                        torch.cuda.empty_cache()
                    bar.write(f"out of memory: retrying with {cap} requests per batch")

    @torch.inference_mode()
    def _decode(self, prefix: _Prefix, units: list[_Unit], todo: list[int], sampling: Sampling, limit: int,
                results: list, bar, running: list[int]) -> None:
        """Decode the units `todo` (longest first), at most `limit` of them at once, into results[unit]."""
        pending = deque(todo)
        rows: list[_Row] = []
        ended_rows: dict[int, list[_Row]] = {}  # unit -> its rows that have ended
        cache, mask, last = None, None, None
        plan, changed = None, False  # attention's row groups, planned again whenever rows leave or enter
        shared = prefix.cache if prefix.shared else None  # the prefix, once, outside the rows' cache
        admit_at = max(1, int(limit * ADMIT_SHARE))
        stop = tuple(s for s in sampling.stop if s)
        tail = max((len(s) for s in stop), default=0) + 4  # tokens decoded to look for a stop string
        while pending or rows:
            live = {r.unit for r in rows if r.done is None}
            ended = sum(r.done is not None for r in rows)
            free = limit - len(live)
            admit = pending and free > 0 and (not live or free >= min(admit_at, len(pending)))
            if ended and (admit or not live):  # a copy of the batch either way: unused columns go too
                keep = [i for i, r in enumerate(rows) if r.done is None]
                cache, mask, last = self._select(cache, mask, last, keep)
                rows = [rows[i] for i in keep]
                changed = True
            elif ended:
                cache, mask, last, rows = self._drop_ended(cache, mask, last, rows)
                changed = True
            if admit:
                take = [pending.popleft() for _ in range(min(free, len(pending)))]
                faults.point("batch")  # SELFREWARD_KILL_AT=batch:STAGE:T@N (selfreward.faults)
                running[0] = len(live) + len(take)
                for chunk in self._prefill_chunks(prefix, [units[i] for i in take]):
                    cache, mask, last = self._join(cache, mask, last, *self._start_rows(prefix, chunk))
                changed = True
                rows += [_Row(i, units[i].first_sample + j,
                              torch.Generator().manual_seed(row_seed(sampling.seed, units[i].request,
                                                                     units[i].first_sample + j))
                              if sampling.temperature > 0 else None)
                         for i in take for j in range(units[i].rows)]
            if not rows:
                continue
            if changed:
                plan, changed = self._plan(mask), False
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
            positions = mask.sum(-1, keepdim=True) - 1 + (len(prefix.ids) if shared else 0)
            with grouped_attention.decoding(plan, shared):
                logits = self.model(input_ids=last[:, None], attention_mask=mask, position_ids=positions,
                                    cache=cache, use_cache=True).logits[:, -1]
            chosen = self._choose(logits, rows, sampling)
            last = torch.tensor(chosen, device=mask.device)
            for row, token in zip(rows, chosen):
                if row.done is None:
                    row.done = self._advance(row, token, sampling, stop, tail)
                    if row.done is not None:
                        ended_rows.setdefault(row.unit, []).append(row)
                        if len(ended_rows[row.unit]) == units[row.unit].rows:
                            results[row.unit] = [r.done for r in sorted(ended_rows.pop(row.unit),
                                                                        key=lambda r: r.sample)]
                            bar.update(1)

    def _prefill_chunks(self, prefix: _Prefix, batch: list[_Unit]) -> list[list[_Unit]]:
        """The units to admit, longest first, in prefills of at most CPU_PREFILL_TOKENS tokens on a CPU (at least
        one unit each); elsewhere one prefill."""
        if self.model.device.type != "cpu":
            return [batch]
        chunks = [[]]
        for unit in batch:
            if chunks[-1] and len(chunks[-1]) >= _per_cpu_pass(len(prefix.ids), len(chunks[-1][0])):
                chunks.append([])
            chunks[-1].append(unit)
        return chunks

    def _per_pass(self, fit, prefix_len: int):
        """A prefill-only call's cap on requests a batch (fit, the memory budget's), also at CPU_PREFILL_TOKENS
        tokens a forward pass on a CPU."""
        if self.model.device.type != "cpu":
            return fit

        def capped(width: int) -> int:
            by_tokens = _per_cpu_pass(prefix_len, width)
            return by_tokens if fit is None else min(fit(width), by_tokens)

        return capped

    def _shares(self, prefix: _Prefix, rows: int) -> bool:
        """Whether decoding `rows` rows at once keeps the prefix out of their cache and attends over it once."""
        return self._grouped and prefix.cache is not None and row_groups.share_prefix(len(prefix.ids), rows)

    def _plan(self, mask: torch.Tensor):
        """Attention's row groups for the rows of this mask (None: one call over every column)."""
        if not self._grouped or not mask.shape[1]:
            return None
        return row_groups.plan(mask.int().argmax(1).tolist(), mask.shape[1])

    def _start_rows(self, prefix: _Prefix, batch: list[_Unit]):
        """(cache, mask, last token) of the rows of these units: each prompt read once, up to its last token, with
        its pads moved before its own columns (and without the shared prefix's, where decoding reads those once),
        then repeated for the unit's samples."""
        input_ids, mask = self._padded(prefix, batch)
        width = input_ids.shape[1]
        cache = self._prefill(prefix, input_ids, mask, width - 1)[0] if width - 1 > len(prefix.ids) \
            else prefix.for_rows(len(batch), self.model.config)
        mask = mask[:, :width - 1]
        if prefix.shared:
            mask = _drop_first_columns(cache, mask, len(prefix.ids))
        mask = _pads_first(cache, mask)
        n = batch[0].rows
        if n > 1:
            cache.batch_repeat_interleave(n)
        return cache, mask.repeat_interleave(n, 0), input_ids[:, -1].repeat_interleave(n, 0)

    def _kv(self, cache: DynamicCache, rows: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each layer's keys and values; an empty cache (a prompt of one token, no prefix) as 0 columns."""
        c = self.model.config.get_text_config(decoder=True)
        heads = getattr(c, "num_key_value_heads", None) or c.num_attention_heads
        dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        empty = torch.zeros(rows, heads, 0, dim, dtype=self.model.dtype, device=self.model.device)
        return [(layer.keys, layer.values) if layer.is_initialized and layer.keys.numel() else (empty, empty)
                for layer in cache.layers]

    @staticmethod
    def _drop_ended(cache, mask, last, rows: list[_Row]):
        """Only the running rows: the last ones take the places of those that have ended, so a row that leaves
        costs a copy of one row's cache, not of the batch's (_select's); the columns stay."""
        n = sum(r.done is None for r in rows)
        places = [i for i in range(n) if rows[i].done is not None]
        moved = [i for i in range(n, len(rows)) if rows[i].done is None]
        moved_t, places_t = (torch.tensor(x, dtype=torch.long, device=mask.device) for x in (moved, places))
        for layer in cache.layers:
            layer.keep_rows(moved_t, places_t, n)
        mask[places_t], last[places_t] = mask[moved_t], last[moved_t]
        for i, j in zip(moved, places):
            rows[j] = rows[i]
        return cache, mask[:n], last[:n], rows[:n]

    def _select(self, cache, mask, last, keep: list[int]):
        """Only the rows `keep`, without the cache columns none of them uses. Layer by layer, in place: each
        layer's old buffers go as its new ones come."""
        if not keep:
            return None, None, None
        index = torch.tensor(keep, device=mask.device)
        mask = mask.index_select(0, index)
        columns = mask.any(0).nonzero().squeeze(1)
        whole = len(columns) == mask.shape[1]
        if not whole:
            mask = mask.index_select(1, columns)
        for layer in cache.layers:
            k, v = layer.keys.index_select(0, index), layer.values.index_select(0, index)
            if not whole:
                k, v = k.index_select(2, columns), v.index_select(2, columns)
            layer.fill([(k, v, 0)], len(keep), mask.shape[1])
        return cache, mask, last.index_select(0, index)

    def _join(self, cache, mask, last, new_cache, new_mask, new_last):
        """The running rows and the new ones in one decoding cache (_SlackLayer layers); the side with fewer columns
        gets masked ones at its start."""
        new_kv = self._kv(new_cache, new_mask.shape[0])
        if cache is None:
            cache = DynamicCache(config=self.model.config)
            cache.layers = [_SlackLayer() for _ in new_kv]
            for layer, (k, v) in zip(cache.layers, new_kv):
                layer.fill([(k, v, 0)], k.shape[0], k.shape[2])
            return cache, new_mask, new_last
        width = max(mask.shape[1], new_mask.shape[1])
        rows = mask.shape[0]
        for layer, (k, v) in zip(cache.layers, new_kv):
            layer.fill([(layer.keys, layer.values, 0), (k, v, rows)], rows + k.shape[0], width)
        del new_kv, new_cache

        def widen(m):
            return torch.cat([m.new_zeros(m.shape[0], width - m.shape[1]), m], 1)

        return cache, torch.cat([widen(mask), widen(new_mask)]), torch.cat([last, new_last])

    @staticmethod
    def _choose(logits: torch.Tensor, rows: list[_Row], sampling: Sampling) -> list[int]:
        """The next token of every row (selfreward.backends.sampler)."""
        return sampler.choose(logits, [r.rng for r in rows], sampling.temperature, sampling.top_p)

    def _advance(self, row: _Row, token: int, sampling: Sampling, stop: tuple[str, ...],
                 tail: int) -> Completion | None:
        """Add the row's new token; its completion once it has ended, else None."""
        if token in self._eos_ids:
            return Completion(self._text(row.tokens), True)
        row.tokens.append(token)
        if stop and any(s in self.tokenizer.decode(row.tokens[-tail:], skip_special_tokens=True) for s in stop):
            text = self.tokenizer.decode(row.tokens, skip_special_tokens=True)
            end = stop_end(text, stop)
            if end is not None:
                return Completion(text[:end].strip(), True)
        if len(row.tokens) >= sampling.max_new_tokens:
            return Completion(self._text(row.tokens), False)
        return None

    def _text(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=True).strip()

    # --- plain generate() (models with a cache of their own) -------------------------------------------------------

    @torch.inference_mode()
    def _generate_batch(self, prefix: _Prefix, batch: list[list[int]], n: int,
                        sampling: Sampling) -> list[list[Completion]]:
        input_ids, mask = self._padded(prefix, batch)
        width = input_ids.shape[1]
        sample = sampling.temperature > 0
        stop = [s for s in sampling.stop if s]
        kwargs = dict(max_new_tokens=sampling.max_new_tokens, do_sample=sample,
                      temperature=sampling.temperature if sample else None, top_p=sampling.top_p if sample else None,
                      top_k=None, pad_token_id=self.tokenizer.pad_token_id)
        if stop:
            kwargs.update(stop_strings=stop, tokenizer=self.tokenizer)
        out = self.model.generate(input_ids=input_ids, attention_mask=mask, num_return_sequences=n, **kwargs)
        new = out[:, width:]
        decoded = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        ended = torch.isin(new, torch.tensor(self._eos_ids, device=new.device)).any(dim=1).tolist()
        done = []
        for text, eos in zip(decoded, ended):
            end = stop_end(text, stop)
            done.append(Completion(text.strip(), eos) if end is None else Completion(text[:end].strip(), True))
        return [done[i * n:(i + 1) * n] for i in range(len(batch))]

    def _fit(self, prefix_len: int, rows: int, new_tokens: int, every_position: bool = False):
        """width -> the most requests of that length (beyond the prefix) one batch may hold, or None: no limit.
        every_position: logits are kept for (up to) every position of a request, not the last one only."""
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
            # attention weights over the request's own tokens, and fp32 logits of the last position (or the logits
            # of every position, in the model's dtype)
            logits = width * c.vocab_size * item if every_position else rows * 2 * c.vocab_size * 4
            per_request = (rows * kv_per_token * (keys + new_tokens) + width * (4 * c.hidden_size + 3 * inner) * item
                           + heads * width * keys * 4 + logits)
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
