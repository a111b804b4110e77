"""Attention of a decoding step on a CPU: SDPA's CPU kernel called once per group of rows on the columns the group
uses, and over the prefix every row shares kept once.

Registered in transformers' AttentionInterface (and its mask interface, with SDPA's mask) under NAME, and set on
HFGenerator's model where that model runs SDPA on a CPU. Outside `decoding(...)`, and for prefills, it is
transformers' SDPA itself. Inside, a one-token step splits its rows as the plan says
(selfreward.backends.row_groups): each group's keys, values and mask are views from its first used column, so
nothing is copied. The kernel is the one SDPA dispatches to on a CPU, called directly with each key/value head's
queries packed together (as transformers' pack_gqa) and the boolean mask made additive once a step, not once a layer
and group. With a shared prefix (the judge's rubric), the rows' caches hold only their own columns: each row's
attention over the prefix's keys and values, read once for all rows, and over its own are merged by their
log-sum-exps, which is attention over both (cascade attention).
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import torch
from transformers import AttentionInterface
from transformers.cache_utils import DynamicCache
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from selfreward.backends.row_groups import Group

NAME = "selfreward_row_groups"
# Arguments some models pass to their attention that the kernel called here does not take: such a model's steps go
# through transformers' SDPA, and with a shared prefix it is an error rather than attention without them.
_NOT_HERE = ("sliding_window", "softcap", "s_aux", "position_bias")


@dataclass(frozen=True)
class _Step:
    plan: tuple[Group, ...] | None
    prefix: DynamicCache | None
    masks: dict = field(default_factory=dict)  # the step's boolean mask and its additive form, made once a step


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


def attention(module, query, key, value, attention_mask, scaling=None, **kwargs):
    step = _step.get()
    used = sorted(k for k in _NOT_HERE if kwargs.get(k) is not None)
    if step is None or query.shape[2] != 1 or (used and step.prefix is None):
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, **kwargs)
    if used:
        raise RuntimeError(f"shared-prefix attention does not implement {', '.join(used)}")
    rows, heads, _, dim = query.shape
    kv_heads = key.shape[1]
    q = query.reshape(rows, kv_heads, heads // kv_heads, dim)  # each key/value head's queries, as pack_gqa
    scale = scaling if scaling is not None else dim ** -0.5
    mask = _additive(step, attention_mask, query.dtype)
    own, own_lse = [], []
    for first, end, column in step.plan or ((0, rows, 0),):
        out, lse = _flash(q[first:end], key[first:end, :, column:], value[first:end, :, column:],
                          _rows(mask, first, end, column), scale)
        own.append(out)
        own_lse.append(lse)
    out = torch.cat(own) if len(own) > 1 else own[0]
    if step.prefix is not None:
        out = _merge_prefix(step.prefix.layers[module.layer_idx], q, out, torch.cat(own_lse), scale)
    return out.reshape(rows, heads, 1, dim).transpose(1, 2).contiguous(), None


def _additive(step: _Step, mask, dtype):
    """A boolean mask as the additive one the kernel takes (what SDPA makes of it), made once a step: every layer
    passes the same mask."""
    if mask is None or mask.dtype != torch.bool:
        return mask
    if step.masks.get("bool") is not mask:
        step.masks["bool"] = mask
        step.masks["additive"] = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(
            ~mask, float("-inf"))
    return step.masks["additive"]


def _rows(mask, first: int, end: int, column: int):
    """The mask of rows [first, end) from `column` (a mask of one row is every row's)."""
    if mask is None:
        return None
    return mask[first:end, ..., column:] if mask.shape[0] > 1 else mask[..., column:]


def _merge_prefix(layer, q, own, own_lse, scale):
    """Attention over the shared prefix's keys and values (`layer`) and over the rows' own, from the latter's
    output and log-sum-exp: every row's queries against the prefix at once, so its keys and values are read once,
    not once a row."""
    rows, kv_heads, _, dim = q.shape
    shared, shared_lse = _flash(q.transpose(0, 1).reshape(1, kv_heads, -1, dim), layer.keys, layer.values, None,
                                scale)
    shared = shared.reshape(kv_heads, rows, -1, dim).transpose(0, 1)
    shared_lse = shared_lse.reshape(kv_heads, rows, -1).transpose(0, 1)
    top = torch.maximum(own_lse, shared_lse)
    w_own, w_shared = (own_lse - top).exp().unsqueeze(-1), (shared_lse - top).exp().unsqueeze(-1)
    return ((own.float() * w_own + shared.float() * w_shared) / (w_own + w_shared)).to(q.dtype)


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
