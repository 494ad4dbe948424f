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

The input removed (input dependence, ``Encoded.noinput_ids``)
    Every example also gets a second sequence that scores **exactly the same target tokens**
    without the left-hand side; the loss without input against the loss with it is the
    pointwise mutual information of the two sides (Cherry-LLM's IFD is their ratio).

    - *Chat template*: every non-target turn (system prompt, user turns, tool turns, assistant
      turns that are input) keeps its place and its template markup but its content is emptied
      (``{"role": role, "content": ""}``: tool calls, call ids and names of input turns go
      too, and so does the record's ``tools`` list); target turns are unchanged (with their
      tool calls), so every assistant header the template writes stays. Emptying rather than
      dropping the turns is deliberate: templates that require alternating roles (Gemma,
      Mistral, Llama-2) refuse a conversation that starts with an assistant turn, templates
      that insert a default system prompt when there is none (Qwen2.5) would add an input that
      the example never had, and the frame of each target turn (headers, end-of-turn tokens,
      turn order) stays the one the model sees in training.
    - *Plain template, prompt-completion / Alpaca / question-answer*: the prompt turn is
      dropped with its ``"\n\n"`` separator: the sequence is the tokenizer's start tokens (BOS)
      followed by the target (``completion + eos``). A tokenizer that adds no BOS (Qwen, GPT-2)
      gets its ``bos_token``, or else its ``eos_token`` (the document separator such models are
      trained with), as the one start token, so that the first target token is scored too.
    - *Plain template, chat rendered without a template*: as for chat, every non-target turn
      keeps its ``"role: "`` prefix and separator with the content emptied.
    - *Plain text* (no input): the sequence is the example itself; ``nll_noinput == nll``.

    The target tokens are spliced in, not re-tokenised: the no-input sequence is the frame of
    the blanked rendering (its non-target tokens, between target runs) with each target run
    replaced by the with-input tokens of that run (after ``max_length``), so the per-token
    comparison is token for token even where a BPE merge across the removed text would tokenise
    the target's first characters differently. A template that cannot render the blanked
    conversation falls back to the start tokens followed by the target runs (logged).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np

from constraintlab.errors import Finding, InputError
from constraintlab.io.example import Example

logger = logging.getLogger(__name__)


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
    noinput_ids : (T0,) int64 or None
        The same target tokens with the input removed (module docstring), ``T0 <= max_length``.
    noinput_positions : (n_target_tokens,) int64 or None
        Position in ``noinput_ids`` of each predicted target token (:meth:`predicted_targets`
        order); -1 where the token is not scored without input (cut by ``max_length``, or at
        position 0 when the tokenizer has neither BOS nor EOS).
    noinput_frame : str
        How ``noinput_ids`` was built: ``"blanked"`` (the blanked rendering's frame), ``"bare"``
        (start tokens + target runs: the template could not render the blanked conversation),
        ``""`` (not built).
    """

    position: int
    input_ids: np.ndarray
    target_mask: np.ndarray
    n_truncated: int
    template: str
    text: str = ""
    offsets: np.ndarray | None = None
    noinput_ids: np.ndarray | None = None
    noinput_positions: np.ndarray | None = None
    noinput_frame: str = ""

    @property
    def noinput_same(self) -> bool:
        """True when the no-input sequence is this sequence (no input to remove): its per-token
        NLL is the with-input NLL, nothing is computed twice."""
        return (self.noinput_ids is not None and self.noinput_positions is not None
                and np.array_equal(self.noinput_ids, self.input_ids)
                and np.array_equal(self.noinput_positions, self.predicted_targets()))

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
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None \
            else tokenizer.eos_token_id
        #: the one start token of a no-input sequence that would otherwise begin with a target
        self.start_id: int | None = None if start is None else int(start)

    def _chat(self, ex: Example, *, blank_input: bool = False
              ) -> tuple[str, list[tuple[int, int]]]:
        # io: as_chat() passes tool_calls / tool_call_id / name through; a record's "tools"
        # list goes to the template as transformers' tools= (TRL does the same).
        msgs = [m.as_chat() for m in ex.messages]
        tools = ex.raw.get("tools") if isinstance(ex.raw, dict) else None
        extra = {"tools": tools} if isinstance(tools, list) and tools and all(
            isinstance(t, dict) for t in tools) else {}
        if blank_input:   # the input removed: non-target turns keep their role, lose content
            keep = set(ex.targets)
            msgs = [m if i in keep else {"role": m["role"], "content": ""}
                    for i, m in enumerate(msgs)]
            extra = {}    # the record's tool definitions are input too

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

    def _plain(self, ex: Example, *, blank_input: bool = False
               ) -> tuple[str, list[tuple[int, int]]]:
        parts, spans, pos = [], [], 0
        targets = set(ex.targets)
        for i, m in enumerate(ex.messages):
            if blank_input and i not in targets:
                if not ex.chat:
                    continue               # the prompt removed, with its separator
                m = type(m)(m.role, "")    # a chat turn keeps its "role: " frame
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

    def encode(self, ex: Example, position: int) -> tuple[Encoded | None, Finding | None]:
        """Tokenise one example; returns ``(encoded, None)`` or ``(None, problem)``."""
        target_text = "".join(ex.messages[i].text for i in ex.targets)
        if not target_text.strip():
            return None, Finding(ex.source, ex.line, "the target is empty or whitespace only",
                                 code="blank_target", index=ex.index)
        use_chat = ex.chat and self.has_template
        try:
            text, spans = self._chat(ex) if use_chat else self._plain(ex)
        except Exception as err:  # template errors (jinja raises its own types) are data errors
            return None, Finding(ex.source, ex.line,
                                 f"the tokenizer's chat template cannot render this example "
                                 f"({type(err).__name__}: {err}); try --no-chat-template",
                                 code="template_error", index=ex.index)
        prefix = [] if use_chat else self.prefix
        ids, mask, offsets = self._tokens(text, spans, prefix)
        full_runs = _runs(mask)
        n_trunc = max(0, len(ids) - self.max_length)
        if n_trunc:
            ids, mask = ids[:self.max_length], mask[:self.max_length]
            offsets = offsets[:self.max_length]
        out = Encoded(position=position, input_ids=np.asarray(ids, dtype=np.int64),
                      target_mask=mask, n_truncated=n_trunc, template="chat" if use_chat
                      else "plain", text=text, offsets=offsets)
        if out.n_target_tokens == 0:
            if n_trunc:
                return None, Finding(
                    ex.source, ex.line,
                    f"target truncated away by max_length={self.max_length}: the record is "
                    f"{len(ids) + n_trunc} tokens and its input alone fills the first "
                    f"{self.max_length}; raise --max-length or shorten the input",
                    code="target_truncated", index=ex.index)
            return None, Finding(ex.source, ex.line, "the target renders to no predictable token",
                                 code="no_target_token", index=ex.index)
        noinput_ids, noinput_pos, frame = self._noinput(ex, use_chat, prefix, out, full_runs)
        return replace(out, noinput_ids=noinput_ids, noinput_positions=noinput_pos,
                       noinput_frame=frame), None

    def _tokens(self, text: str, spans: list[tuple[int, int]], prefix: list[int]
                ) -> tuple[list[int], np.ndarray, np.ndarray]:
        """``prefix`` + the tokens of ``text``, their target mask (a token is a target when any
        of its characters lies in a span) and character offsets."""
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        offsets = np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)
        starts, ends = offsets[:, 0], offsets[:, 1]
        mask = np.zeros(len(ids), dtype=bool)
        for a, b in spans:
            mask |= (ends > a) & (starts < b)
        mask = np.concatenate([np.zeros(len(prefix), dtype=bool), mask])
        offsets = np.concatenate([np.zeros((len(prefix), 2), dtype=np.int64), offsets])
        return list(prefix) + ids, mask, offsets

    def _noinput(self, ex: Example, use_chat: bool, prefix: list[int], enc: Encoded,
                 full_runs: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray, str]:
        """The no-input sequence of ``enc`` (module docstring) and where its targets sit.

        Returns
        -------
        ids : (T0,) int64; positions : (n_target_tokens,) int64 (-1: not scored); frame : str
        """
        ids = enc.input_ids.tolist()
        runs = _runs(enc.target_mask)          # the target runs that survived max_length
        frame = "blanked"
        try:
            text, spans = (self._chat(ex, blank_input=True) if use_chat
                           else self._plain(ex, blank_input=True))
            b_ids, b_mask, _ = self._tokens(text, spans, prefix)
            b_runs = _runs(b_mask)
            if len(b_runs) != len(full_runs):
                raise ValueError(f"{len(b_runs)} target runs without input, "
                                 f"{len(full_runs)} with it")
        except Exception as err:  # any template failure falls back (counted, logged)
            logger.debug("%s:%d: blanked rendering unusable (%s); bare no-input sequence",
                         ex.source, ex.line, err)
            frame = "bare"
            b_ids, b_runs = list(prefix), [(len(prefix), len(prefix))] * len(full_runs)
        out: list[int] = []
        where = np.full(len(ids), -1, dtype=np.int64)    # with-input position -> no-input
        cursor = 0
        for (a, b), (fa, fb) in zip(runs, b_runs, strict=False):
            out += b_ids[cursor:fa]                      # the frame before this target run
            cursor = fb
            where[a:b] = np.arange(len(out), len(out) + b - a)
            out += ids[a:b]
        # (tokens after the last target never condition a target: left out)
        predicted = enc.predicted_targets()
        positions = where[predicted]
        if len(positions) and positions[0] == 0:         # the target would open the sequence
            if self.start_id is not None:
                out = [self.start_id, *out]
                positions = positions + 1
            else:
                positions[0] = -1
        if len(out) > self.max_length:
            out = out[:self.max_length]
            positions[positions >= self.max_length] = -1
        return np.asarray(out, dtype=np.int64), positions, frame

    def encode_some(self, examples: list[Example]) -> tuple[list[Encoded], list[Finding]]:
        """Tokenise every example that can be; the others become findings.

        Returns
        -------
        encoded : list of Encoded, for the usable examples in order, ``position`` renumbered
            0, 1, ... (the row of each in the store).
        findings : list of :class:`~constraintlab.errors.Finding`, one per unusable example
            (``code``: ``blank_target``, ``template_error``, ``target_truncated``,
            ``no_target_token``; ``index`` = ``Example.index``).
        """
        out, findings = [], []
        for pos, ex in enumerate(examples):
            enc, problem = self.encode(ex, pos)
            if problem is not None:
                findings.append(problem)
            else:
                out.append(replace(enc, position=len(out)) if enc.position != len(out) else enc)
        bare = sum(e.noinput_frame == "bare" for e in out)
        if bare:
            logger.warning("%d example(s): the chat template cannot render the conversation with "
                           "the input emptied; their no-input sequence is the start token and "
                           "the target turns alone", bare)
        return out, findings

    def encode_all(self, examples: list[Example]) -> list[Encoded]:
        """Tokenise every example; raises :class:`InputError` listing all unusable ones."""
        out, problems = self.encode_some(examples)
        if problems:
            raise InputError(problems)
        return out


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs ``[start, stop)`` of True in ``mask``."""
    m = np.concatenate([[False], np.asarray(mask, dtype=bool), [False]])
    edges = np.flatnonzero(m[1:] != m[:-1])
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]
