"""Render examples to token ids and a loss mask (loss only on target tokens).

Chat template (``Example.chat`` and the tokenizer has ``chat_template``)
    Same masking as TRL's completion-only / assistant-only loss. For each target turn ``i`` the
    target span is the text that ``messages[:i+1]`` adds to ``messages[:i]`` rendered with
    ``add_generation_prompt=True``: the turn's content and whatever the template closes it
    with (end-of-turn token), but not the ``<assistant>`` header. If a template is not
    prefix-consistent (it renders earlier turns differently once later ones exist), the span
    falls back to the turn's content as found in the full rendering.
Plain template (non-chat examples, or no chat template, or ``use_chat_template=False``)
    Turns are concatenated in order; a non-target turn is ``content + "\\n\\n"``, a target turn
    is ``content + eos_token``. Chat examples rendered this way prefix every turn with
    ``"role: "`` (the prefix is input, not target). The tokenizer's own start tokens (BOS) are
    prepended as for any plain text.

Tokens are marked as target when any of their characters lies in a target span (a token
merging the separator with the first target word, like ``" Hello"``, is a target); the loss is
the mean NLL of predicting target tokens (the first token of a sequence is never predicted).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from constraintlab.errors import InputError, Problem
from constraintlab.io.example import Example


@dataclass(frozen=True)
class Encoded:
    """One tokenised example.

    Attributes
    ----------
    position : int
        Position of the example in the sequence given to the encoder.
    input_ids : (T,) int64
    target_mask : (T,) bool
        True for tokens the loss is taken on.
    n_truncated : int
        Tokens dropped by ``max_length``.
    template : str
        ``"chat"`` or ``"plain"``.
    text : str
        The rendered text the tokens come from.
    offsets : (T, 2) int64
        Character span ``[start, end)`` of each token in ``text`` (``(0, 0)`` for tokens the
        tokenizer adds itself, such as BOS).
    """

    position: int
    input_ids: np.ndarray
    target_mask: np.ndarray
    n_truncated: int
    template: str
    text: str = ""
    offsets: np.ndarray | None = None

    def predicted_targets(self) -> np.ndarray:
        """(n_target_tokens,) int64 positions of the target tokens the loss predicts (target
        mask at position >= 1: the first token of a sequence is never predicted)."""
        return np.flatnonzero(self.target_mask[1:]) + 1

    def target_pieces(self) -> list[str]:
        """The text of each predicted target token (:meth:`predicted_targets`), in order: from
        the token's start to the next token's start, so that the pieces of a run of target
        tokens concatenate to its text (whitespace included)."""
        pos = self.predicted_targets()
        if self.offsets is None:
            return [""] * len(pos)
        starts, ends = self.offsets[:, 0].tolist(), self.offsets[:, 1].tolist()
        out, cursor = [], 0
        for p in pos.tolist():
            start = max(starts[p], cursor)
            stop = ends[p]
            if p + 1 < len(starts) and starts[p + 1] >= stop:
                stop = starts[p + 1]
            stop = max(stop, start)
            out.append(self.text[start:stop])
            cursor = stop   # bytes of one character split over tokens: shown once
        return out

    @property
    def n_tokens(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def n_target_tokens(self) -> int:
        """Target tokens that are predicted (position >= 1)."""
        return int(self.target_mask[1:].sum())

    @property
    def n_input_tokens(self) -> int:
        return int((~self.target_mask).sum())


def _special_prefix(tokenizer) -> list[int]:
    """Token ids the tokenizer puts before plain text (e.g. BOS)."""
    with_sp = tokenizer("a", add_special_tokens=True)["input_ids"]
    without = tokenizer("a", add_special_tokens=False)["input_ids"]
    for start in range(len(with_sp) - len(without) + 1):
        if with_sp[start:start + len(without)] == without:
            return list(with_sp[:start])
    return []


class Renderer:
    """Turns :class:`Example` objects into :class:`Encoded` token sequences."""

    def __init__(self, tokenizer, *, max_length: int, use_chat_template: bool = True) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.has_template = bool(use_chat_template and getattr(tokenizer, "chat_template", None))
        self.prefix = _special_prefix(tokenizer)
        self.eos = tokenizer.eos_token or ""

    def _chat(self, ex: Example) -> tuple[str, list[tuple[int, int]]]:
        # io: as_chat() passes tool_calls / tool_call_id / name through; a record's "tools"
        # list goes to the template as transformers' tools= (TRL does the same).
        msgs = [m.as_chat() for m in ex.messages]
        tools = ex.raw.get("tools") if isinstance(ex.raw, dict) else None
        extra = {"tools": tools} if isinstance(tools, list) and tools and all(
            isinstance(t, dict) for t in tools) else {}

        def render(ms, gen=False):
            return self.tokenizer.apply_chat_template(ms, tokenize=False,
                                                      add_generation_prompt=gen, **extra)

        full = render(msgs)
        spans, cursor = [], 0
        for i in ex.targets:
            pre, upto = render(msgs[:i], gen=True), render(msgs[:i + 1])
            if upto.startswith(pre) and full.startswith(upto) and len(pre) >= cursor:
                spans.append((len(pre), len(upto)))
                cursor = len(upto)
                continue
            content = msgs[i]["content"]
            at = full.find(content, cursor)
            if at < 0:
                raise ValueError("the chat template does not render the target turn verbatim")
            spans.append((at, at + len(content)))
            cursor = at + len(content)
        return full, spans

    def _plain(self, ex: Example) -> tuple[str, list[tuple[int, int]]]:
        parts, spans, pos = [], [], 0
        targets = set(ex.targets)
        for i, m in enumerate(ex.messages):
            head = f"{m.role}: " if ex.chat else ""
            if i in targets:
                body = m.text + self.eos   # io: Message.text = content + tool calls
                parts.append(head)
                pos += len(head)
                spans.append((pos, pos + len(body)))
                parts.append(body)
                pos += len(body)
                if i != len(ex.messages) - 1:
                    parts.append("\n\n")
                    pos += 2
            else:
                text = head + m.text + "\n\n"
                parts.append(text)
                pos += len(text)
        return "".join(parts), spans

    def encode(self, ex: Example, position: int) -> tuple[Encoded | None, Problem | None]:
        """Tokenise one example; returns ``(encoded, None)`` or ``(None, problem)``."""
        target_text = "".join(ex.messages[i].text for i in ex.targets)
        if not target_text.strip():
            return None, Problem(ex.source, ex.line, "the target is empty or whitespace only")
        use_chat = ex.chat and self.has_template
        try:
            text, spans = self._chat(ex) if use_chat else self._plain(ex)
        except Exception as err:  # template errors (jinja raises its own types) are data errors
            return None, Problem(ex.source, ex.line,
                                 f"the tokenizer's chat template cannot render this example "
                                 f"({type(err).__name__}: {err}); try --no-chat-template")
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        offsets = np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)
        starts, ends = offsets[:, 0], offsets[:, 1]
        mask = np.zeros(len(ids), dtype=bool)
        for a, b in spans:
            mask |= (ends > a) & (starts < b)
        prefix = [] if use_chat else self.prefix
        ids = prefix + ids
        mask = np.concatenate([np.zeros(len(prefix), dtype=bool), mask])
        offsets = np.concatenate([np.zeros((len(prefix), 2), dtype=np.int64), offsets])
        n_trunc = max(0, len(ids) - self.max_length)
        if n_trunc:
            ids, mask = ids[:self.max_length], mask[:self.max_length]
            offsets = offsets[:self.max_length]
        out = Encoded(position=position, input_ids=np.asarray(ids, dtype=np.int64),
                      target_mask=mask, n_truncated=n_trunc, template="chat" if use_chat
                      else "plain", text=text, offsets=offsets)
        if out.n_target_tokens == 0:
            why = (f"no target token left within max_length={self.max_length} "
                   f"({len(ids) + n_trunc} tokens); raise max_length or shorten the input"
                   if n_trunc else "the target renders to no predictable token")
            return None, Problem(ex.source, ex.line, why)
        return out, None

    def encode_all(self, examples: list[Example]) -> list[Encoded]:
        """Tokenise every example; raises :class:`InputError` listing all unusable ones."""
        out, problems = [], []
        for pos, ex in enumerate(examples):
            enc, problem = self.encode(ex, pos)
            if problem is not None:
                problems.append(problem)
            else:
                out.append(enc)
        if problems:
            raise InputError(problems)
        return out
