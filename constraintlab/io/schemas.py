"""The record schemas people train on, and how each becomes an :class:`Example`.

=================  =========================================  ====================================
schema             fields                                     input side / target side
=================  =========================================  ====================================
chat               ``messages``: [{role, content}]            turns before the target / last
                                                              assistant turn (or every assistant
                                                              turn with ``train_on=all-assistant``)
sharegpt           ``conversations``: [{from, value}]         as chat (human->user, gpt->assistant)
prompt_completion  ``prompt``, ``completion`` (strings, or    prompt / completion (TRL's
                   both lists of messages)                    completion-only loss)
alpaca             ``instruction``, ``input``?, ``output``    instruction + blank line + input /
                                                              output
qa                 ``question``, ``answer``                   question / answer (GSM8K)
text               ``text``                                   nothing / the whole text
=================  =========================================  ====================================

Detection looks at the keys, in the order of the table; extra keys are ignored.
"""

from __future__ import annotations

from typing import Any

from constraintlab.io._json import key_list, type_name
from constraintlab.io.example import ROLES, Message

#: Keys that identify each schema, checked in this order.
SIGNATURES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("chat", ("messages",)),
    ("sharegpt", ("conversations",)),
    ("prompt_completion", ("prompt", "completion")),
    ("alpaca", ("instruction", "output")),
    ("qa", ("question", "answer")),
    ("text", ("text",)),
)

SHAREGPT_ROLES = {
    "system": "system", "human": "user", "user": "user", "gpt": "assistant",
    "assistant": "assistant", "chatgpt": "assistant", "model": "assistant", "tool": "tool",
    "function": "tool", "observation": "tool",
}


class RecordProblem(Exception):
    """What is wrong with one record (the reader adds path and line)."""


def detect_schema(record: Any) -> str | None:
    """The first schema whose keys ``record`` has, or None."""
    if not isinstance(record, dict):
        return None
    for name, keys in SIGNATURES:
        if all(k in record for k in keys):
            return name
    return None


def describe_unknown(record: Any) -> str:
    """The message for a record that matches no schema."""
    if not isinstance(record, dict):
        return f"record must be a JSON object, not {type_name(record)}"
    return ("no known schema: expected messages, conversations, prompt+completion, "
            f"instruction+output, question+answer or text (found keys: {key_list(record)})")


def convert(record: Any, schema: str, *, all_assistant: bool
            ) -> tuple[tuple[Message, ...], tuple[int, ...], bool]:
    """Turn one record into ``(messages, targets, chat)`` under ``schema``.

    Raises
    ------
    RecordProblem
        With a message naming the field and what is wrong with it.
    """
    if not isinstance(record, dict):
        raise RecordProblem(f"record must be a JSON object, not {type_name(record)}")
    if schema == "chat":
        messages = _chat_messages(_field(record, "messages", list), "messages")
        return messages, _assistant_targets(messages, all_assistant), True
    if schema == "sharegpt":
        messages = _sharegpt_messages(_field(record, "conversations", list))
        return messages, _assistant_targets(messages, all_assistant), True
    if schema == "prompt_completion":
        return _prompt_completion(record)
    if schema == "alpaca":
        instruction = _field(record, "instruction", str)
        extra = record.get("input")
        if extra is not None and not isinstance(extra, str):
            raise RecordProblem(f"field 'input' must be a string, not {type_name(extra)}")
        if not instruction.strip():
            raise RecordProblem("empty input: field 'instruction' is blank")
        prompt = instruction if not (extra and extra.strip()) else f"{instruction}\n\n{extra}"
        return _pair(prompt, _target(record, "output"))
    if schema == "qa":
        question = _field(record, "question", str)
        if not question.strip():
            raise RecordProblem("empty input: field 'question' is blank")
        return _pair(question, _target(record, "answer"))
    if schema == "text":
        return (Message("assistant", _target(record, "text")),), (0,), False
    raise ValueError(f"unknown schema {schema!r}")  # pragma: no cover - guarded by ReadConfig


def _pair(prompt: str, target: str) -> tuple[tuple[Message, ...], tuple[int, ...], bool]:
    return (Message("user", prompt), Message("assistant", target)), (1,), False


def _field(record: dict, name: str, kind: type) -> Any:
    if name not in record:
        raise RecordProblem(f"missing field '{name}'")
    value = record[name]
    if not isinstance(value, kind):
        raise RecordProblem(f"field '{name}' must be {_KIND[kind]}, not {type_name(value)}")
    return value


def _target(record: dict, name: str) -> str:
    value = _field(record, name, str)
    if not value.strip():
        raise RecordProblem(f"empty target: field '{name}' is blank")
    return value


def _content(value: Any, where: str) -> str:
    """Message content: a string, or a list of ``{"type": "text", "text": ...}`` parts."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = []
        for part in value:
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(
                    part.get("text"), str):
                parts.append(part["text"])
            else:
                kind = part.get("type") if isinstance(part, dict) else type_name(part)
                raise RecordProblem(f"{where} has a content part of type {kind!r}; only text "
                                    "parts are supported")
        return "".join(parts)
    if value is None:
        raise RecordProblem(f"{where} has no content")
    raise RecordProblem(f"{where} content must be a string, not {type_name(value)}")


def _chat_messages(items: list, name: str) -> tuple[Message, ...]:
    if not items:
        raise RecordProblem(f"field '{name}' is an empty list")
    out = []
    for i, item in enumerate(items):
        where = f"{name}[{i}]"
        if not isinstance(item, dict):
            raise RecordProblem(f"{where} must be an object with role and content, not "
                                f"{type_name(item)}")
        if "role" not in item:
            raise RecordProblem(f"{where} has no 'role'")
        role = item["role"]
        if not isinstance(role, str) or role not in ROLES:
            raise RecordProblem(f"{where} has unknown role {role!r} (expected one of "
                                f"{', '.join(ROLES)})")
        out.append(Message(role, _content(item.get("content"), where)))
    return tuple(out)


def _sharegpt_messages(items: list) -> tuple[Message, ...]:
    if not items:
        raise RecordProblem("field 'conversations' is an empty list")
    out = []
    for i, item in enumerate(items):
        where = f"conversations[{i}]"
        if not isinstance(item, dict):
            raise RecordProblem(f"{where} must be an object with from and value, not "
                                f"{type_name(item)}")
        speaker = item.get("from", item.get("role"))
        if speaker is None:
            raise RecordProblem(f"{where} has no 'from'")
        role = SHAREGPT_ROLES.get(speaker) if isinstance(speaker, str) else None
        if role is None:
            raise RecordProblem(f"{where} has unknown speaker {speaker!r} (expected one of "
                                f"{', '.join(sorted(SHAREGPT_ROLES))})")
        out.append(Message(role, _content(item.get("value", item.get("content")), where)))
    return tuple(out)


def _assistant_targets(messages: tuple[Message, ...], all_assistant: bool,
                       start: int = 0) -> tuple[int, ...]:
    if messages[-1].role != "assistant":
        raise RecordProblem("conversation does not end with an assistant turn (last role: "
                            f"{messages[-1].role})")
    if all_assistant:
        targets = tuple(i for i in range(start, len(messages))
                        if messages[i].role == "assistant")
    else:
        targets = (len(messages) - 1,)
    for i in targets:
        if not messages[i].content.strip():
            raise RecordProblem(f"empty target: assistant turn {i} is blank")
    return targets


def _prompt_completion(record: dict) -> tuple[tuple[Message, ...], tuple[int, ...], bool]:
    missing = [k for k in ("prompt", "completion") if k not in record]
    if missing:
        raise RecordProblem(f"missing field(s) {', '.join(repr(k) for k in missing)} "
                            f"(found keys: {key_list(record)})")
    prompt, completion = record["prompt"], record["completion"]
    if isinstance(prompt, str) and isinstance(completion, str):
        if not completion.strip():
            raise RecordProblem("empty target: field 'completion' is blank")
        if not prompt:
            return (Message("assistant", completion),), (0,), False
        return _pair(prompt, completion)
    if isinstance(prompt, list) and isinstance(completion, list):
        head = _chat_messages(prompt, "prompt")
        if not completion:
            raise RecordProblem("field 'completion' is an empty list")
        tail = _chat_messages(completion, "completion")
        messages = head + tail
        # The whole completion is the target (TRL's completion-only loss).
        return messages, _assistant_targets(messages, True, start=len(head)), True
    raise RecordProblem("fields 'prompt' and 'completion' must both be strings or both be "
                        f"lists of messages (got {type_name(prompt)} and "
                        f"{type_name(completion)})")


_KIND = {str: "a string", list: "a list", dict: "an object"}
