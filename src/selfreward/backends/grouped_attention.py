"""transformers' SDPA attention, run once per group of decoding rows on the columns the group uses, and over the
prefix every row shares kept once.

Registered in transformers' AttentionInterface (and its mask interface, with SDPA's mask) under NAME, and set on
HFGenerator's model where that model runs SDPA on a CPU. Outside `decoding(...)` it is SDPA itself. Inside, a
one-token step splits its rows as the plan says (selfreward.backends.row_groups): each group's keys, values and
mask are views from its first used column, so nothing is copied. With a shared prefix (the judge's rubric), the
rows' caches hold only their own columns: each row's attention over the prefix's keys and values, read once for
all rows, and over its own are merged by their log-sum-exps, which is attention over both (cascade attention).
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import torch
from transformers import AttentionInterface
from transformers.cache_utils import DynamicCache
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from selfreward.backends.row_groups import Group

NAME = "selfreward_row_groups"
# Arguments some models pass to their attention that the shared-prefix path does not implement: rather an error
# than attention without them.
_NOT_WITH_PREFIX = ("sliding_window", "softcap", "s_aux", "position_bias")


@dataclass(frozen=True)
class _Step:
    plan: tuple[Group, ...] | None
    prefix: DynamicCache | None


_step: ContextVar[_Step | None] = ContextVar("selfreward_row_groups", default=None)


@contextmanager
def decoding(plan: tuple[Group, ...] | None, prefix: DynamicCache | None = None):
    """The model's one-token forward passes inside split their attention as `plan` says (None: one call over
    every column) and, given a prefix (a cache of batch one), attend over it as well as over the rows' own cache."""
    token = _step.set(_Step(plan, prefix))
    try:
        yield
    finally:
        _step.reset(token)


def attention(module, query, key, value, attention_mask, **kwargs):
    step = _step.get()
    if step is None or query.shape[2] != 1:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    if step.prefix is not None:
        return _with_prefix(step, module, query, key, value, attention_mask, **kwargs)
    if step.plan is None or len(step.plan) < 2:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    outputs = []
    for first, end, column in step.plan:
        mask = _rows(attention_mask, first, end, column)
        out, _ = sdpa_attention_forward(module, query[first:end], key[first:end, :, column:],
                                        value[first:end, :, column:], mask, **kwargs)
        outputs.append(out)
    return torch.cat(outputs), None


def _rows(mask, first: int, end: int, column: int):
    """The mask of rows [first, end) from `column` (a mask of one row is every row's)."""
    if mask is None:
        return None
    return mask[first:end, ..., column:] if mask.shape[0] > 1 else mask[..., column:]


def _with_prefix(step: _Step, module, query, key, value, attention_mask, scaling=None, **kwargs):
    used = sorted(k for k in _NOT_WITH_PREFIX if kwargs.get(k) is not None)
    if used:
        raise RuntimeError(f"shared-prefix attention does not implement {', '.join(used)}")
    rows, heads, _, dim = query.shape
    kv_heads = key.shape[1]
    q = query.reshape(rows, kv_heads, heads // kv_heads, dim)  # each key/value head's queries, as pack_gqa
    scale = scaling if scaling is not None else dim ** -0.5
    mask = attention_mask
    if mask is not None and mask.dtype == torch.bool:
        mask = torch.zeros(mask.shape, dtype=query.dtype, device=mask.device).masked_fill_(~mask, float("-inf"))
    own, own_lse = [], []
    for first, end, column in step.plan or ((0, rows, 0),):
        out, lse = _flash(q[first:end], key[first:end, :, column:], value[first:end, :, column:],
                          _rows(mask, first, end, column), scale)
        own.append(out)
        own_lse.append(lse)
    layer = step.prefix.layers[module.layer_idx]
    # every row's queries against the prefix at once: its keys and values are read once, not once a row
    shared, shared_lse = _flash(q.transpose(0, 1).reshape(1, kv_heads, -1, dim), layer.keys, layer.values, None,
                                scale)
    shared = shared.reshape(kv_heads, rows, -1, dim).transpose(0, 1)
    shared_lse = shared_lse.reshape(kv_heads, rows, -1).transpose(0, 1)
    own_lse = torch.cat(own_lse)
    top = torch.maximum(own_lse, shared_lse)
    w_own, w_shared = (own_lse - top).exp().unsqueeze(-1), (shared_lse - top).exp().unsqueeze(-1)
    out = (torch.cat(own).float() * w_own + shared.float() * w_shared) / (w_own + w_shared)
    return out.to(query.dtype).reshape(rows, heads, 1, dim).transpose(1, 2).contiguous(), None


def _flash(q, k, v, mask, scale):
    """(attention output, its log-sum-exp per query): the kernel SDPA runs on a CPU, which returns both."""
    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, attn_mask=mask, scale=scale)


def install(model) -> bool:
    """Whether the model now runs grouped attention: only a model on a CPU that ran SDPA. On a GPU a step is not
    bound by reading the cache the way it is on a CPU, and more kernel launches would cost more than the pads."""
    if getattr(model.config, "_attn_implementation", None) != "sdpa" or model.device.type != "cpu":
        return False
    AttentionInterface.register(NAME, attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    model.set_attn_implementation(NAME)
    return model.config._attn_implementation == NAME
