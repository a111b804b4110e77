"""The next token of every decoding row: the most likely one, or a draw from generate()'s distribution (temperature,
then the top-p nucleus) with each row's own generator.

A draw inverts the cumulative distribution of the row's nucleus in vocabulary order, in float64: the token is the one
the inversion over the whole vocabulary gives (its left-out tokens add exact zeros) for the same generator state. The
nucleus is every token at least as likely as the least likely one generate() keeps, so tokens of equal probability
are all kept or all dropped and the draw does not depend on how a sort orders ties.

Finding the nucleus is most of the work: a sort of every row costs about what a decoding step of a small model
costs, and on a CPU even `topk` over the whole vocabulary costs ~2 ms for 32 rows. So it is looked for in three
places, each row in the first where it is sure to lie:
1. the NUCLEUS_FIRST likeliest tokens of the vocabulary's NUCLEUS_SLICES slices of SLICE tokens that hold the
   likeliest peaks (a maximum over slices is one cheap pass; the slices' tokens are a few thousand);
2. the NUCLEUS_FIRST likeliest tokens of the whole vocabulary;
3. the whole vocabulary, sorted.
A place holds a row's nucleus when the least likely token kept is likelier than anything the place left out.
"""

from __future__ import annotations

import torch

NUCLEUS_FIRST = 256  # tokens a nucleus is looked for among before the whole vocabulary is sorted
SLICE = 256
# Measured on the sample workload's logits (SmolLM2-135M, temperature 0.7, top-p 0.9, 3,672 row-steps): the
# nucleus needed more than 16 slices in 4% of rows, which then look among the whole vocabulary's likeliest tokens.
NUCLEUS_SLICES = 16


def choose(logits: torch.Tensor, rngs: list, temperature: float, top_p: float) -> list[int]:
    """Each row's next token: the argmax where temperature <= 0, else a draw with its generator rngs[i]."""
    if temperature <= 0:
        return logits.argmax(-1).tolist()
    probs = logits.to(torch.float32, copy=True).div_(temperature).softmax(-1)
    if top_p >= 1.0:
        cdf = probs.double().cumsum(-1)
        return _invert(cdf, rngs, torch.arange(cdf.shape[1], device=cdf.device).expand_as(cdf), cdf.shape[1])
    drawn: list[int | None] = [None] * len(rngs)
    pending = torch.arange(len(rngs), device=probs.device)
    for likeliest in (_in_likeliest_slices, _in_vocabulary, _sorted):
        found = likeliest(probs if len(pending) == len(rngs) else probs[pending])
        if found is None:
            continue
        tokens, ok = _draw_in(*found, [rngs[i] for i in pending.tolist()], top_p, probs.shape[1])
        for i, token in zip(pending[ok].tolist(), tokens):
            drawn[i] = token
        pending = pending[~ok]
        if not len(pending):
            break
    return drawn


def _in_likeliest_slices(probs: torch.Tensor):
    """(values, index, bound): the NUCLEUS_FIRST likeliest tokens among the NUCLEUS_SLICES slices with the highest
    peaks, descending, and the highest probability left out (the next slice's peak, or the last value kept: tokens
    left out may tie with it). None where the vocabulary has too few slices for this to read less."""
    rows, vocab = probs.shape
    whole = vocab // SLICE * SLICE
    peaks = probs[:, :whole].view(rows, -1, SLICE).amax(-1)
    if whole < vocab:
        peaks = torch.cat([peaks, probs[:, whole:].amax(-1, keepdim=True)], 1)
    if peaks.shape[1] <= NUCLEUS_SLICES:
        return None
    top, slices = peaks.topk(NUCLEUS_SLICES + 1, dim=-1)
    index = (slices[:, :-1, None] * SLICE + torch.arange(SLICE, device=probs.device)).flatten(1)
    past_end = index >= vocab  # the last slice is shorter where the vocabulary is not a multiple of SLICE
    values = probs.gather(1, index.clamp(max=vocab - 1)).masked_fill_(past_end, -1.0)
    values, at = values.topk(NUCLEUS_FIRST, dim=-1)
    return values, index.gather(1, at), torch.maximum(values[:, -1], top[:, -1])


def _in_vocabulary(probs: torch.Tensor):
    """(values, index, bound) of the NUCLEUS_FIRST likeliest tokens; None where that is the whole vocabulary."""
    if probs.shape[1] <= NUCLEUS_FIRST:
        return None
    values, index = probs.topk(NUCLEUS_FIRST, dim=-1)
    return values, index, values[:, -1]


def _sorted(probs: torch.Tensor):
    """(values, index, bound) of the whole vocabulary: nothing is left out."""
    values, index = probs.sort(dim=-1, descending=True)
    return values, index, torch.full(values.shape[:1], -1.0, device=probs.device)


def _draw_in(values: torch.Tensor, index: torch.Tensor, bound: torch.Tensor, rngs: list, top_p: float,
             vocab: int) -> tuple[list[int], torch.Tensor]:
    """(the tokens drawn, ok): a draw for each row (ok) whose nucleus lies in its `values` (probabilities,
    descending, of the tokens at `index`), i.e. whose least likely kept probability exceeds its `bound`; rows not
    ok draw nothing, so that their generators are untouched."""
    kept = (values.cumsum(-1) - values < top_p).sum(-1, keepdim=True)  # generate()'s rule: mass before < top_p
    threshold = values.gather(1, kept - 1)
    ok = bound < threshold[:, 0]
    if not bool(ok.any()):
        return [], ok
    if not bool(ok.all()):
        values, index, threshold = values[ok], index[ok], threshold[ok]
        rngs = [r for r, good in zip(rngs, ok.tolist()) if good]
    keep = values >= threshold
    tokens, order = index.masked_fill(~keep, vocab).sort(-1)
    cdf = values.gather(1, order).masked_fill(tokens == vocab, 0.0).double().cumsum(-1)
    return _invert(cdf, rngs, tokens, keep.sum(-1)), ok


def _invert(cdf: torch.Tensor, rngs: list, tokens: torch.Tensor, count) -> list[int]:
    """Each row's token at its own generator's uniform draw times the row's total, on its cumulative sums `cdf`
    (columns past a row's `count` tokens repeat its total: a draw never lands there)."""
    draws = torch.tensor([torch.rand((), dtype=torch.float64, generator=r).item() for r in rngs],
                         dtype=torch.float64, device=cdf.device) * cdf[:, -1]
    at = torch.searchsorted(cdf, draws[:, None], right=True)[:, 0]
    at = torch.minimum(at, torch.as_tensor(count, device=cdf.device) - 1)
    return tokens.gather(1, at[:, None])[:, 0].tolist()
