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
preference         ``chosen``, ``rejected``, ``prompt``?      as chat: the turns before the reply
                   (strings, HH transcripts "\n\nHuman: ...  / the chosen reply (its last
                   \n\nAssistant: ...", or lists of          assistant turn); ``rejected`` with
                   messages)                                  ``preference="rejected"``
alpaca             ``instruction``, ``input``?, ``output``    instruction + blank line + input /
                                                              output
qa                 ``question``, ``answer``                   question / answer (GSM8K)
text               ``text``                                   nothing / the whole text
fields             the ``input_field`` and ``target_field``   that field / that field
                   of :class:`ReadConfig` (strings)
=================  =========================================  ====================================

Detection looks at the keys, in the order of the table; extra keys are ignored. ``fields`` is
never detected: naming ``target_field`` selects it.

Preference replies: a string in the Anthropic-HH style (turns marked ``Human:`` and
``Assistant:`` at the start or after a blank line) is split into turns; the ``prompt`` (a string
or a list of messages) is put before a reply that does not already start with it; a plain string
reply with a plain string prompt is a prompt/reply pair, and one without a prompt is read alone.

Chat turns may carry tool calls (OpenAI/TRL format): an assistant turn with ``"content": null``
(or a string) and ``"tool_calls": [{"type": "function", "function": {"name", "arguments"}}]``,
and ``tool`` turns with the tool's answer (``tool_call_id``/``name`` kept). They are kept in
:class:`Message` and rendered by the tokenizer's chat template; an assistant turn that only calls
tools is a valid target (the loss is on the call it emits).

Reason codes
------------
:class:`RecordProblem` carries a code (the record is left out); notes (the record is used, but
is odd) are appended to the ``notes`` list given to :func:`convert`:

- invalid: ``not_object``, ``missing_field``, ``wrong_type``, ``blank_target``,
  ``empty_conversation``, ``bad_turn``, ``unknown_role``, ``bad_content`` (content neither a
  string nor text parts, or missing), ``bad_tool_call``, ``not_assistant_end``;
- notes: ``empty_input`` (blank instruction/question/prompt: the target is read alone, or with
  the alpaca ``input`` as the prompt; a chat with no non-blank turn before its target),
  ``content_parts`` (content given as a list of text parts, joined).
"""

from __future__ import annotations

import re
from typing import Any

from constraintlab._text import type_name
from constraintlab.io._json import key_list
from constraintlab.io.example import ROLES, Message

#: Keys that identify each schema, checked in this order.
SIGNATURES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("chat", ("messages",)),
    ("sharegpt", ("conversations",)),
    ("prompt_completion", ("prompt", "completion")),
    ("preference", ("chosen", "rejected")),
    ("alpaca", ("instruction", "output")),
    ("qa", ("question", "answer")),
    ("text", ("text",)),
)

SHAREGPT_ROLES = {
    "system": "system", "human": "user", "user": "user", "gpt": "assistant",
    "assistant": "assistant", "chatgpt": "assistant", "model": "assistant", "tool": "tool",
    "function": "tool", "observation": "tool", "function_call": "assistant",
}

#: ``(code, message)`` of an odd but usable record.
Note = tuple[str, str]


class RecordProblem(Exception):
    """What is wrong with one record (the reader adds path and line); ``code`` is the reason."""

    def __init__(self, message: str, code: str = "invalid") -> None:
        super().__init__(message)
        self.code = code


def detect_schema(record: Any) -> str | None:
    """The first schema whose keys ``record`` has, or None."""
    if not isinstance(record, dict):
        return None
    for name, keys in SIGNATURES:
        if all(k in record for k in keys):
            return name
    return None


#: Field names that usually hold the prompt / the reply (to suggest --input/--target-field).
INPUT_NAMES = ("prompt", "instruction", "question", "query", "input", "problem", "context",
               "source", "user")
TARGET_NAMES = ("response", "output", "answer", "completion", "solution", "target", "reply",
                "assistant", "label")


def describe_unknown(record: Any) -> str:
    """The message for a record that matches no schema."""
    if not isinstance(record, dict):
        return f"record must be a JSON object, not {type_name(record, json=True)}"
    return ("no known schema: expected messages, conversations, prompt+completion, "
            "chosen+rejected, instruction+output, question+answer or text (found keys: "
            f"{key_list(record)})")


def suggest_fields(keys: list[str]) -> str:
    """How to name the fields of records with ``keys``: ``--input-field X --target-field Y``
    with the likeliest names, or the bare flags."""
    lower = {k.lower(): k for k in keys}
    target = next((lower[n] for n in TARGET_NAMES if n in lower), None)
    inp = next((lower[n] for n in INPUT_NAMES if n in lower and lower[n] != target), None)
    if target is None:
        return "--input-field NAME --target-field NAME"
    return (f"--input-field {inp} " if inp else "") + f"--target-field {target}"


def convert(record: Any, schema: str, *, all_assistant: bool, notes: list[Note] | None = None,
            preference: str = "chosen", fields: tuple[str | None, str] | None = None
            ) -> tuple[tuple[Message, ...], tuple[int, ...], bool]:
    """Turn one record into ``(messages, targets, chat)`` under ``schema``.

    Notes on an odd but usable record (``(code, message)``) are appended to ``notes``.
    ``preference`` is the reply of a preference record that is read (``chosen``/``rejected``);
    ``fields`` the ``(input_field, target_field)`` of schema ``fields``.

    Raises
    ------
    RecordProblem
        With a message naming the field and what is wrong with it, and its reason code.
    """
    notes = [] if notes is None else notes
    if not isinstance(record, dict):
        raise RecordProblem(f"record must be a JSON object, not {type_name(record, json=True)}",
                            "not_object")
    if schema == "chat":
        messages = _chat_messages(_field(record, "messages", list), "messages", notes)
        return messages, _assistant_targets(messages, all_assistant, notes=notes), True
    if schema == "sharegpt":
        messages = _sharegpt_messages(_field(record, "conversations", list), notes)
        return messages, _assistant_targets(messages, all_assistant, notes=notes), True
    if schema == "prompt_completion":
        return _prompt_completion(record, notes)
    if schema == "preference":
        return _preference(record, preference, all_assistant, notes)
    if schema == "fields":
        if fields is None:
            raise ValueError("schema 'fields' needs fields=(input_field, target_field)")
        input_field, target_field = fields
        target = _target(record, target_field)
        if input_field is None:
            return _alone(target)
        prompt = _field(record, input_field, str)
        if not prompt.strip():
            notes.append(("empty_input", f"empty input: field '{input_field}' is blank; the "
                          "target is read without a prompt"))
            return _alone(target)
        return _pair(prompt, target)
    if schema == "alpaca":
        instruction = _field(record, "instruction", str)
        extra = record.get("input")
        if extra is not None and not isinstance(extra, str):
            raise RecordProblem("field 'input' must be a string, not "
                                f"{type_name(extra, json=True)}", "wrong_type")
        target = _target(record, "output")
        has_extra = bool(extra and extra.strip())
        if not instruction.strip():
            notes.append(("empty_input", "empty input: field 'instruction' is blank; " + (
                "the 'input' field is the prompt" if has_extra else "the output is read "
                "without a prompt")))
            return _pair(extra, target) if has_extra else _alone(target)
        prompt = f"{instruction}\n\n{extra}" if has_extra else instruction
        return _pair(prompt, target)
    if schema == "qa":
        question = _field(record, "question", str)
        target = _target(record, "answer")
        if not question.strip():
            notes.append(("empty_input", "empty input: field 'question' is blank; the answer "
                          "is read without a prompt"))
            return _alone(target)
        return _pair(question, target)
    if schema == "text":
        return _alone(_target(record, "text"))
    raise ValueError(f"unknown schema {schema!r}")  # pragma: no cover - guarded by ReadConfig


def _pair(prompt: str, target: str) -> tuple[tuple[Message, ...], tuple[int, ...], bool]:
    return (Message("user", prompt), Message("assistant", target)), (1,), False


def _alone(target: str) -> tuple[tuple[Message, ...], tuple[int, ...], bool]:
    return (Message("assistant", target),), (0,), False


def _field(record: dict, name: str, kind: type) -> Any:
    if name not in record:
        raise RecordProblem(f"missing field '{name}'", "missing_field")
    value = record[name]
    if not isinstance(value, kind):
        raise RecordProblem(f"field '{name}' must be {_KIND[kind]}, not "
                            f"{type_name(value, json=True)}", "wrong_type")
    return value


def _target(record: dict, name: str) -> str:
    value = _field(record, name, str)
    if not value.strip():
        raise RecordProblem(f"empty target: field '{name}' is blank", "blank_target")
    return value


def _content(value: Any, where: str, notes: list[Note]) -> str:
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
                kind = part.get("type") if isinstance(part, dict) else type_name(part, json=True)
                raise RecordProblem(f"{where} has a content part of type {kind!r}; only text "
                                    "parts are supported", "bad_content")
        if not any(code == "content_parts" for code, _ in notes):
            notes.append(("content_parts", f"{where} gives its content as a list of text "
                          "parts; they are joined into one text"))
        return "".join(parts)
    if value is None:
        raise RecordProblem(f"{where} has no content", "bad_content")
    raise RecordProblem(f"{where} content must be a string, not {type_name(value, json=True)}",
                        "bad_content")


def _tool_calls(item: dict, role: str, where: str) -> tuple[dict[str, Any], ...]:
    """An assistant turn's ``tool_calls`` (OpenAI/TRL: ``{"type": "function", "function":
    {"name": str, "arguments": str | object}}``; a bare ``{"name", "arguments"}`` also)."""
    calls = item.get("tool_calls")
    if calls is None or calls == []:
        return ()
    if role != "assistant":
        raise RecordProblem(f"{where} has tool_calls but role {role!r}; only assistant turns "
                            "call tools", "bad_tool_call")
    if not isinstance(calls, list):
        raise RecordProblem(f"{where} tool_calls must be a list, not {type_name(calls, json=True)}",
                            "bad_tool_call")
    for j, call in enumerate(calls):
        fn = call.get("function", call) if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise RecordProblem(f"{where} tool_calls[{j}] must be an object with a function "
                                "name ({\"type\": \"function\", \"function\": {\"name\": ..., "
                                "\"arguments\": ...}})", "bad_tool_call")
        args = fn.get("arguments")
        if args is not None and not isinstance(args, (str, dict)):
            raise RecordProblem(f"{where} tool_calls[{j}] arguments must be a string or an "
                                f"object, not {type_name(args, json=True)}", "bad_tool_call")
    return tuple(calls)


def _turn(item: dict, role: str, raw_content: Any, where: str, notes: list[Note]) -> Message:
    calls = _tool_calls(item, role, where)
    content = "" if calls and raw_content is None else _content(raw_content, where, notes)
    call_id, name = item.get("tool_call_id"), item.get("name")
    return Message(role, content, tool_calls=calls,
                   tool_call_id=call_id if isinstance(call_id, str) else None,
                   name=name if isinstance(name, str) and role == "tool" else None)


def _chat_messages(items: list, name: str, notes: list[Note]) -> tuple[Message, ...]:
    if not items:
        raise RecordProblem(f"field '{name}' is an empty list", "empty_conversation")
    out = []
    for i, item in enumerate(items):
        where = f"{name}[{i}]"
        if not isinstance(item, dict):
            raise RecordProblem(f"{where} must be an object with role and content, not "
                                f"{type_name(item, json=True)}", "bad_turn")
        if "role" not in item:
            raise RecordProblem(f"{where} has no 'role'", "bad_turn")
        role = item["role"]
        if not isinstance(role, str) or role not in ROLES:
            raise RecordProblem(f"{where} has unknown role {role!r} (expected one of "
                                f"{', '.join(ROLES)})", "unknown_role")
        out.append(_turn(item, role, item.get("content"), where, notes))
    return tuple(out)


def _sharegpt_messages(items: list, notes: list[Note]) -> tuple[Message, ...]:
    if not items:
        raise RecordProblem("field 'conversations' is an empty list", "empty_conversation")
    out = []
    for i, item in enumerate(items):
        where = f"conversations[{i}]"
        if not isinstance(item, dict):
            raise RecordProblem(f"{where} must be an object with from and value, not "
                                f"{type_name(item, json=True)}", "bad_turn")
        speaker = item.get("from", item.get("role"))
        if speaker is None:
            raise RecordProblem(f"{where} has no 'from'", "bad_turn")
        role = SHAREGPT_ROLES.get(speaker) if isinstance(speaker, str) else None
        if role is None:
            raise RecordProblem(f"{where} has unknown speaker {speaker!r} (expected one of "
                                f"{', '.join(sorted(SHAREGPT_ROLES))})", "unknown_role")
        out.append(_turn(item, role, item.get("value", item.get("content")), where, notes))
    return tuple(out)


def _assistant_targets(messages: tuple[Message, ...], all_assistant: bool,
                       start: int = 0, notes: list[Note] | None = None) -> tuple[int, ...]:
    if messages[-1].role != "assistant":
        raise RecordProblem("conversation does not end with an assistant turn (last role: "
                            f"{messages[-1].role})", "not_assistant_end")
    if all_assistant:
        targets = tuple(i for i in range(start, len(messages))
                        if messages[i].role == "assistant")
    else:
        targets = (len(messages) - 1,)
    for i in targets:
        if not messages[i].content.strip() and not messages[i].tool_calls:
            raise RecordProblem(f"empty target: assistant turn {i} is blank", "blank_target")
    before = [m for i, m in enumerate(messages[:targets[-1]]) if i not in targets]
    if notes is not None and before and not any(m.text.strip() for m in before):
        notes.append(("empty_input", "empty input: every turn before the target is blank"))
    return targets


def _prompt_completion(record: dict, notes: list[Note]
                       ) -> tuple[tuple[Message, ...], tuple[int, ...], bool]:
    missing = [k for k in ("prompt", "completion") if k not in record]
    if missing:
        raise RecordProblem(f"missing field(s) {', '.join(repr(k) for k in missing)} "
                            f"(found keys: {key_list(record)})", "missing_field")
    prompt, completion = record["prompt"], record["completion"]
    if isinstance(prompt, str) and isinstance(completion, str):
        if not completion.strip():
            raise RecordProblem("empty target: field 'completion' is blank", "blank_target")
        if not prompt.strip():
            notes.append(("empty_input", "empty input: field 'prompt' is blank; the "
                          "completion is read " + ("without a prompt" if not prompt else
                                                   "after it")))
        if not prompt:
            return _alone(completion)
        return _pair(prompt, completion)
    if isinstance(prompt, list) and isinstance(completion, list):
        head = _chat_messages(prompt, "prompt", notes) if prompt else ()
        if not prompt:
            notes.append(("empty_input", "empty input: field 'prompt' is an empty list"))
        if not completion:
            raise RecordProblem("field 'completion' is an empty list", "empty_conversation")
        tail = _chat_messages(completion, "completion", notes)
        messages = head + tail
        # The whole completion is the target (TRL's completion-only loss).
        return messages, _assistant_targets(messages, True, start=len(head), notes=notes), True
    raise RecordProblem("fields 'prompt' and 'completion' must both be strings or both be "
                        f"lists of messages (got {type_name(prompt, json=True)} and "
                        f"{type_name(completion, json=True)})", "wrong_type")


# An Anthropic-HH transcript: turns marked "Human:" / "Assistant:" at the start or after a
# blank line.
_HH_MARK = re.compile(r"(?:\A\s*|\n\n)(Human|Assistant):[ \t]?")
_HH_ROLES = {"Human": "user", "Assistant": "assistant"}


def is_transcript(text: str) -> bool:
    """True when ``text`` is an HH transcript (it opens with a ``Human:``/``Assistant:`` mark
    and holds an ``Assistant:`` turn)."""
    m = _HH_MARK.match(text)
    return m is not None and ("\n\nAssistant:" in text or m.group(1) == "Assistant")


def parse_transcript(text: str) -> tuple[Message, ...]:
    """The turns of an HH transcript, ``"\n\nHuman: hi\n\nAssistant: hello"`` ->
    ``(user: "hi", assistant: "hello")`` (content as written, less the space after the mark)."""
    parts = _HH_MARK.split(text)
    # parts: [before the first mark, role, content, role, content, ...]
    return tuple(Message(_HH_ROLES[parts[i]], parts[i + 1]) for i in range(1, len(parts), 2))


def _preference(record: dict, side: str, all_assistant: bool, notes: list[Note]
                ) -> tuple[tuple[Message, ...], tuple[int, ...], bool]:
    if side not in record:
        raise RecordProblem(f"missing field '{side}' (found keys: {key_list(record)})",
                            "missing_field")
    reply, prompt = record[side], record.get("prompt")
    if prompt is not None and not isinstance(prompt, (str, list)):
        raise RecordProblem(f"field 'prompt' must be a string or a list of messages, not "
                            f"{type_name(prompt, json=True)}", "wrong_type")
    head: tuple[Message, ...] = ()
    hh_prompt = isinstance(prompt, str) and _HH_MARK.match(prompt) is not None
    if isinstance(prompt, list):
        head = _chat_messages(prompt, "prompt", notes) if prompt else ()
    elif hh_prompt:  # "\n\nHuman: ...\n\nAssistant:" (the open reply turn dropped)
        head = parse_transcript(prompt)
        if head and head[-1].role == "assistant" and not head[-1].content.strip():
            head = head[:-1]
    elif isinstance(prompt, str) and prompt.strip():
        head = (Message("user", prompt),)
    if isinstance(reply, str):
        if hh_prompt:
            messages = parse_transcript(reply if reply.startswith(prompt) else prompt + reply)
        elif is_transcript(reply):
            messages = parse_transcript(reply)
            messages = messages if _starts_with(messages, head) else head + messages
        elif not head:
            if not reply.strip():
                raise RecordProblem(f"empty target: field '{side}' is blank", "blank_target")
            notes.append(("empty_input", f"empty input: no prompt, and field '{side}' is not a "
                          "Human:/Assistant: transcript; the reply is read alone"))
            return _alone(reply)
        else:
            messages = (*head, Message("assistant", reply))
    elif isinstance(reply, list):
        if not reply:
            raise RecordProblem(f"field '{side}' is an empty list", "empty_conversation")
        tail = _chat_messages(reply, side, notes)
        messages = tail if _starts_with(tail, head) else head + tail
    else:
        raise RecordProblem(f"field '{side}' must be a string or a list of messages, not "
                            f"{type_name(reply, json=True)}", "wrong_type")
    if not messages:
        raise RecordProblem(f"field '{side}' holds no turns", "empty_conversation")
    return messages, _assistant_targets(messages, all_assistant, notes=notes), True


def _starts_with(messages: tuple[Message, ...], head: tuple[Message, ...]) -> bool:
    """``messages`` already opens with the turns of ``head`` (same roles, same stripped text)."""
    return len(messages) >= len(head) and all(
        m.role == h.role and m.content.strip() == h.content.strip()
        for m, h in zip(messages, head, strict=False))


_KIND = {str: "a string", list: "a list", dict: "an object"}
