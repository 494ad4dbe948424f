"""The unit everything downstream works on: one training example = one constraint.

Every supported schema (chat, ShareGPT, prompt-completion, Alpaca, question/answer, plain text)
is normalised into the same shape: a conversation (``messages``) in which some turns are
*targets* (the loss is taken on them) and the rest are *input* (what the model is conditioned
on). Non-chat schemas become a one- or two-turn conversation and keep ``chat=False`` so the
encoder renders them with its plain template instead of the tokenizer's chat template.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "developer", "user", "assistant", "tool"]
ROLES: tuple[str, ...] = ("system", "developer", "user", "assistant", "tool")

Schema = Literal["chat", "sharegpt", "prompt_completion", "alpaca", "qa", "text"]
SCHEMAS: tuple[str, ...] = ("chat", "sharegpt", "prompt_completion", "alpaca", "qa", "text")


@dataclass(frozen=True)
class Message:
    """One turn of a conversation."""

    role: str
    content: str


@dataclass(frozen=True)
class Example:
    """One record of the dataset, normalised.

    Attributes
    ----------
    index : int
        0-based record index in file order (skipped records keep their index; the next valid
        record does not take it over). This is the id used in every report.
    line : int
        1-based line where the record starts in ``source`` (row number for Parquet and
        in-memory data).
    source : str
        File path the record came from, or ``<records>`` / ``<dataset>``.
    schema : str
        One of :data:`SCHEMAS`: the schema the record was read as.
    messages : tuple[Message, ...]
        The conversation. For non-chat schemas: ``(user: prompt, assistant: target)``, or just
        ``(assistant: text,)`` for plain text.
    targets : tuple[int, ...]
        Indices into ``messages`` of the turns the loss is taken on (sorted, non-empty, all
        ``assistant`` turns).
    chat : bool
        True when the record was conversational (``messages``/``conversations`` or
        prompt-completion given as message lists): the encoder renders it with the tokenizer's
        chat template. False: render as plain ``prompt + completion`` text.
    raw : dict
        The record exactly as read.
    """

    index: int
    line: int
    source: str
    schema: str
    messages: tuple[Message, ...]
    targets: tuple[int, ...]
    chat: bool
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def input_text(self) -> str:
        """The left-hand side as text: every non-target turn before the last target.

        Chat examples render each turn as ``role: content`` on its own paragraph; non-chat
        examples give the prompt verbatim (empty for plain text).
        """
        last = self.targets[-1]
        turns = [m for i, m in enumerate(self.messages[:last]) if i not in self.targets]
        if not self.chat:
            return "\n\n".join(m.content for m in turns)
        return "\n\n".join(f"{m.role}: {m.content}" for m in turns)

    @property
    def target_text(self) -> str:
        """The right-hand side as text: the target turns' contents, joined by a blank line."""
        return "\n\n".join(self.messages[i].content for i in self.targets)

    @property
    def location(self) -> str:
        """``source:line``, the way problems and reports point at a record."""
        return f"{self.source}:{self.line}"
