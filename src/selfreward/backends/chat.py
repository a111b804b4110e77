"""Chat prompts as token ids, with every message's text kept plain text.

The chat template writes the structure (role headers, turn ends); the message contents are untrusted text: a
response may hold "<|im_end|>", "<|eot_id|>", "[INST]" or "<｜Assistant｜>". Nothing is rewritten to make that safe;
the tokenizer decides instead:

1. The template is rendered twice: as is (the prompt text), and with each content wrapped in a pair of sentinels
   (private-use characters that occur in no message nor template). The two renderings must agree once the sentinels
   are dropped; that gives the span of every content in the prompt text. Whitespace at either end of a content is
   left outside its sentinels, so templates that `trim` the content (Llama 3, Gemma) agree too.
2. The prompt text is tokenized as a whole, exactly as `tokenizer(text, add_special_tokens=False)` does. If no
   control token (a special token, or an added token that the template itself writes, like Qwen's <tool_call>) lies
   within a content span, those ids are the answer: ordinary text gets the very ids it always got, so greedy
   outputs do not move.
3. Otherwise the text is tokenized piece by piece: the structure between the contents as usual, each content with
   special tokens split (and, should an added control token still come out, with no added token at all), so its
   "<|im_end|>" is the characters "<", "|", "im", ... and never the token. Only then do the ids at a content's ends
   differ from one-piece tokenization.

A template that moves or cuts the sentinels (Qwen3 and DeepSeek-R1 keep only what follows "</think>" in an earlier
assistant turn; a template may shorten a content) leaves the content spans unknown: those prompts are encoded by
transformers' own `apply_chat_template(..., sanitize_control_tokens=True)`, which marks each control token inside
the messages and encodes it as plain text (a mark the template cuts off still breaks the text there). A template
that re-encodes the content, so that no sentinel comes through (`tojson` with ensure_ascii), would re-encode those
marks too: it is refused with a UserError rather than let message text become structure.

Nothing here imports torch.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterable, Mapping

from selfreward.errors import UserError

_FIRST_SENTINEL = 0xF0000  # Supplementary Private Use Area-A: no tokenizer gives these a meaning
_LAST_SENTINEL = 0xFFFFD
_CONTROL_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def prompt_text(tokenizer, messages: Iterable[Mapping[str, str]], add_generation_prompt: bool = True) -> str:
    """The chat template's rendering of `messages`, as text (for display and logs: `encode_chat` gives the ids)."""
    return tokenizer.apply_chat_template(_plain_messages(messages), add_generation_prompt=add_generation_prompt,
                                         tokenize=False)


def encode_chat(tokenizer, messages: Iterable[Mapping[str, str]], add_generation_prompt: bool = True,
                continuation: str = "") -> list[int]:
    """Token ids of `messages` through the tokenizer's chat template, the template's structure tokenized as usual
    and every message content as plain text (see the module docstring).

    continuation: untrusted text put after the prompt, such as the start of the assistant's reply whose next token
    is scored; it is tokenized with the prompt and kept plain text as the contents are."""
    messages = _plain_messages(messages)
    text, spans = _render(tokenizer, messages, add_generation_prompt, continuation)
    if spans is None:
        return _transformers_sanitized(tokenizer, messages, add_generation_prompt, continuation)
    control = control_tokens(tokenizer)
    ids = _whole(tokenizer, text, spans, control)
    if ids is not None:
        return ids
    return _piecewise(tokenizer, text, spans, control)


def control_tokens(tokenizer) -> dict[str, int]:
    """{text: id} of the tokens that message text must never become: the tokenizer's special tokens, and its other
    added tokens that its chat template writes (whitespace tokens, like Gemma's "\\n\\n", are ordinary text)."""
    template = _template_text(tokenizer)
    key = (template, len(tokenizer.added_tokens_decoder))
    cached = _CONTROL_CACHE.get(tokenizer) if _weakrefable(tokenizer) else None
    if cached is not None and cached[0] == key:
        return cached[1]
    found: dict[str, int] = {}
    for token_id, token in tokenizer.added_tokens_decoder.items():
        if token.special or (token.content.strip() and token.content in template):
            found[token.content] = token_id
    for content in tokenizer.all_special_tokens:
        token_id = tokenizer.convert_tokens_to_ids(content)
        if isinstance(token_id, int):
            found.setdefault(content, token_id)
    if _weakrefable(tokenizer):
        _CONTROL_CACHE[tokenizer] = (key, found)
    return found


def _template_text(tokenizer) -> str:
    """The chat template's source (all of them, for a tokenizer with named templates)."""
    template = tokenizer.chat_template or ""
    return "\n".join(template.values()) if isinstance(template, dict) else template


def _weakrefable(obj) -> bool:
    try:
        weakref.ref(obj)
    except TypeError:
        return False
    return True


def _plain_messages(messages: Iterable[Mapping[str, str]]) -> list[dict]:
    out = []
    for m in messages:
        if not isinstance(m.get("content"), str):
            raise UserError(f"a chat message's content must be text, got {type(m.get('content')).__name__} "
                            f"(role {m.get('role')!r})")
        out.append(dict(m))
    return out


def _render(tokenizer, messages: list[dict], add_generation_prompt: bool,
            continuation: str) -> tuple[str, list[tuple[int, int]] | None]:
    """(the prompt text, the span of every content and of the continuation in it); spans None when the template
    moves the sentinels around (see the module docstring)."""
    open_, close = _sentinels([m["content"] for m in messages] + [continuation, _template_text(tokenizer)])
    marked = [{**m, "content": _wrap(m["content"], open_, close)} for m in messages]
    for _ in range(2):  # twice: a template that writes today's date (Llama 3) may have rendered across midnight
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt,
                                             tokenize=False) + continuation
        rendered = tokenizer.apply_chat_template(marked, add_generation_prompt=add_generation_prompt, tokenize=False)
        rendered += _wrap(continuation, open_, close) if continuation else ""
        if rendered.replace(open_, "").replace(close, "") == text:
            break
    if open_ not in rendered and close not in rendered:
        if rendered == text:
            return text, []  # the template writes no message text at all
        raise UserError("this model's chat template re-encodes message text (its start and end marks do not come "
                        "through), so text inside a message could become chat structure; set model.chat_template "
                        "to a template that writes each message's content as it is")
    if rendered.replace(open_, "").replace(close, "") != text:
        return text, None  # the template cuts or moves the marks, with the text around them
    spans, pos, start = [], 0, None
    for piece in re.split(f"([{open_}{close}])", rendered):
        if piece == open_:
            if start is not None:
                return text, None
            start = pos
        elif piece == close:
            if start is None:
                return text, None
            spans.append((start, pos))
            start = None
        else:
            pos += len(piece)
    return text, (None if start is not None else spans)


def _sentinels(texts: list[str]) -> tuple[str, str]:
    """Two characters that occur in none of `texts`."""
    code = _FIRST_SENTINEL
    while code < _LAST_SENTINEL:
        pair = chr(code), chr(code + 1)
        if not any(pair[0] in t or pair[1] in t for t in texts):
            return pair
        code += 2
    raise UserError("message text uses every private-use character that could mark where it starts and ends")


def _wrap(content: str, open_: str, close: str) -> str:
    """`content` between the sentinels, its leading and trailing whitespace outside them, so that a template's
    trim() or strip() gives the same text with or without the sentinels."""
    core = content.strip()
    if not core:
        return content + open_ + close
    lead = content[:len(content) - len(content.lstrip())]
    trail = content[len(content.rstrip()):]
    return lead + open_ + core + close + trail


def _encode(tokenizer, text: str, **kwargs) -> list[int]:
    return tokenizer(text, add_special_tokens=False, **kwargs)["input_ids"]


def _whole(tokenizer, text: str, spans: list[tuple[int, int]], control: dict[str, int]) -> list[int] | None:
    """The one-piece tokenization of `text`, or None when a control token in it comes from inside a span."""
    ids_of_control = set(control.values())
    try:
        enc = tokenizer(text, add_special_tokens=False, split_special_tokens=False, return_offsets_mapping=True)
        offsets = enc["offset_mapping"]
    except (NotImplementedError, ValueError, TypeError, KeyError):
        # A tokenizer without offsets (a Python one): look for control-token text inside the spans instead.
        if any(token in text[a:b] for a, b in spans for token in control):
            return None
        return _encode(tokenizer, text, split_special_tokens=False)
    for token_id, (start, end) in zip(enc["input_ids"], offsets):
        if token_id in ids_of_control and any(start < b and end > a for a, b in spans):
            return None
    return enc["input_ids"]


def _piecewise(tokenizer, text: str, spans: list[tuple[int, int]], control: dict[str, int]) -> list[int]:
    """The structure between the spans tokenized as usual, each span as plain text."""
    ids_of_control = set(control.values())
    newline = _encode(tokenizer, "\n", split_special_tokens=False)
    ids: list[int] = []
    pos = 0
    for a, b in spans + [(len(text), len(text))]:
        if a > pos:
            ids += _encode_piece(tokenizer, text[pos:a], pos == 0, newline, _structure)
        if b > a:
            piece = _encode_piece(tokenizer, text[a:b], a == 0, newline, _split_special)
            if ids_of_control.intersection(piece):
                piece = _encode_piece(tokenizer, text[a:b], a == 0, newline, _without_added_tokens)
            if ids_of_control.intersection(piece):
                raise UserError("this tokenizer makes a special token out of plain message text "
                                f"({text[a:b][:60]!r}...); it cannot keep message text from becoming chat structure")
            ids += piece
        pos = max(pos, b)
    return ids


def _encode_piece(tokenizer, piece: str, at_start: bool, newline: list[int], encode) -> list[int]:
    """`encode(piece)` as it reads in the middle of a text: after a newline that is then removed, so that a
    SentencePiece tokenizer does not add the space it puts at the start of a text (transformers does the same in
    `encode_marked_chat`)."""
    if at_start:
        return encode(tokenizer, piece)
    ids = encode(tokenizer, "\n" + piece)
    if newline and ids[:len(newline)] == newline:
        return ids[len(newline):]
    return encode(tokenizer, piece)


def _structure(tokenizer, text: str) -> list[int]:
    return _encode(tokenizer, text, split_special_tokens=False)


def _split_special(tokenizer, text: str) -> list[int]:
    return _encode(tokenizer, text, split_special_tokens=True)


def _without_added_tokens(tokenizer, text: str) -> list[int]:
    """`text` through the tokenizer's normalizer, pre-tokenizer and model alone: no added token, special or not."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return _split_special(tokenizer, text)
    if backend.normalizer is not None:
        text = backend.normalizer.normalize_str(text)
    splits = [s for s, _ in backend.pre_tokenizer.pre_tokenize_str(text)] if backend.pre_tokenizer else [text]
    return [token.id for s in splits for token in backend.model.tokenize(s)]


def _transformers_sanitized(tokenizer, messages: list[dict], add_generation_prompt: bool,
                            continuation: str) -> list[int]:
    """transformers' own sanitizer, for templates that move the sentinels (see the module docstring)."""
    if continuation:
        messages = messages + [{"role": "assistant", "content": continuation}]
    try:
        out = tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt and not continuation,
                                            continue_final_message=bool(continuation), tokenize=True,
                                            sanitize_control_tokens=True, return_dict=False)
    except (TypeError, ValueError, NotImplementedError) as e:
        raise UserError(f"this model's chat template rewrites message text, and transformers could not encode it "
                        f"with the messages' control tokens kept as text ({e}); set model.chat_template to a "
                        "template that writes each message's content as it is") from None
    return list(out)
