"""transformers' SDPA attention, run once per group of decoding rows on the columns the group uses.

Registered in transformers' AttentionInterface (and its mask interface, with SDPA's mask) under NAME, and set on
HFGenerator's model where that model runs SDPA. Outside `groups(...)` it is SDPA itself; inside, a one-token step
splits its rows as the plan says (selfreward.backends.row_groups): each group's keys, values and mask are views from
its first used column, so nothing is copied.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from selfreward.backends.row_groups import Group

NAME = "selfreward_row_groups"
_plan: ContextVar[tuple[Group, ...] | None] = ContextVar("selfreward_row_groups", default=None)


@contextmanager
def groups(plan: tuple[Group, ...] | None):
    """The model's forward passes inside split their one-token attention as `plan` says (None: they do not)."""
    token = _plan.set(plan)
    try:
        yield
    finally:
        _plan.reset(token)


def attention(module, query, key, value, attention_mask, **kwargs):
    plan = _plan.get()
    if plan is None or len(plan) < 2 or query.shape[2] != 1 or plan[-1][1] != query.shape[0]:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    outputs = []
    for first, end, column in plan:
        rows = slice(first, end) if attention_mask is not None and attention_mask.shape[0] > 1 else slice(None)
        mask = None if attention_mask is None else attention_mask[rows, ..., column:]
        out, _ = sdpa_attention_forward(module, query[first:end], key[first:end, :, column:],
                                        value[first:end, :, column:], mask, **kwargs)
        outputs.append(out)
    return torch.cat(outputs), None


def install(model) -> bool:
    """Whether the model now runs grouped attention: only a model on a CPU that ran SDPA. On a GPU a step is not
    bound by reading the cache the way it is on a CPU, and more kernel launches would cost more than the pads."""
    if getattr(model.config, "_attn_implementation", None) != "sdpa" or model.device.type != "cpu":
        return False
    AttentionInterface.register(NAME, attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    model.set_attn_implementation(NAME)
    return model.config._attn_implementation == NAME
