"""The unit everything downstream works on: one training example = one constraint.

Every supported schema (chat, ShareGPT, prompt-completion, Alpaca, question/answer, plain text)
is normalised into the same shape: a conversation (``messages``) in which some turns are
*targets* (the loss is taken on them) and the rest are *input* (what the model is conditioned
on). Non-chat schemas become a one- or two-turn conversation and keep ``chat=False`` so the
encoder renders them with its plain template instead of the tokenizer's chat template.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "developer", "user", "assistant", "tool"]
ROLES: tuple[str, ...] = ("system", "developer", "user", "assistant", "tool")

Schema = Literal["chat", "sharegpt", "prompt_completion", "alpaca", "qa", "text"]
SCHEMAS: tuple[str, ...] = ("chat", "sharegpt", "prompt_completion", "preference", "alpaca",
                            "qa", "text", "fields")


@dataclass(frozen=True)
class Message:
    """One turn of a conversation.

    Attributes
    ----------
    role, content : str
        As in the record (``content`` is ``""`` for an assistant turn that only calls tools).
    tool_calls : tuple[dict, ...]
        An assistant turn's tool calls exactly as given (OpenAI/TRL format: ``{"type":
        "function", "function": {"name", "arguments"}}``); passed to the chat template as is.
    tool_call_id, name : str or None
        A ``tool`` turn's call id and tool name, when the record gives them.
    """

    role: str
    content: str
    tool_calls: tuple[dict[str, Any], ...] = field(default=(), hash=False)
    tool_call_id: str | None = None
    name: str | None = None

    @property
    def text(self) -> str:
        """The turn as text: its content, then one JSON line ``{"name": ..., "arguments":
        ...}`` per tool call (what the text analyses and the plain template see)."""
        calls = [_call_text(c) for c in self.tool_calls]
        return "\n".join([self.content, *calls] if self.content else calls)

    def as_chat(self) -> dict[str, Any]:
        """The turn as a chat-template message: ``role``, ``content``, and ``tool_calls`` /
        ``tool_call_id`` / ``name`` when set."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [dict(c) for c in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            out["name"] = self.name
        return out


def _call_text(call: dict[str, Any]) -> str:
    fn = call.get("function", call)
    args = fn.get("arguments")
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except (ValueError, RecursionError):  # not JSON: shown as the string
            pass
    return json.dumps({"name": fn.get("name"), "arguments": args}, ensure_ascii=False,
                      default=str)


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
            return "\n\n".join(m.text for m in turns)
        return "\n\n".join(f"{m.role}: {m.text}" for m in turns)

    @property
    def target_text(self) -> str:
        """The right-hand side as text: the target turns' contents, joined by a blank line."""
        return "\n\n".join(self.messages[i].text for i in self.targets)

    @property
    def text(self) -> str:
        """The whole record as one text: :attr:`input_text`, a blank line, :attr:`target_text`
        (just the target when there is no input). What the lexical analyses compare."""
        inp = self.input_text
        return f"{inp}\n\n{self.target_text}" if inp else self.target_text
