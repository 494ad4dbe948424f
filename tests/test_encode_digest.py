"""examples_digest: the content hash of in-memory examples names everything the chat template
sees (tool calls included), and plain examples hash as they always did."""

from __future__ import annotations

import hashlib
import json

from constraintlab.encode.extraction import examples_digest
from constraintlab.io.example import Example, Message


def _chat(call_args: str, *, call_id: str | None = "c1", name: str = "add") -> Example:
    messages = (Message("user", "what is 2 + 3?"),
                Message("assistant", "", tool_calls=({"type": "function", "function": {
                    "name": name, "arguments": call_args}},)),
                Message("tool", "5", tool_call_id=call_id, name=name),
                Message("assistant", "5"))
    return Example(index=0, line=1, source="<records>", schema="chat", messages=messages,
                   targets=(1, 3), chat=True, raw={})


def test_datasets_differing_only_in_tool_calls_differ() -> None:
    base = examples_digest([_chat('{"a": 2, "b": 3}')])
    assert examples_digest([_chat('{"a": 2, "b": 3}')]) == base           # deterministic
    assert examples_digest([_chat('{"a": 3, "b": 2}')]) != base           # the arguments
    assert examples_digest([_chat('{"a": 2, "b": 3}', name="sum")]) != base  # the tool
    assert examples_digest([_chat('{"a": 2, "b": 3}', call_id="c2")]) != base  # the call id
    # the texts the old digest hashed are the same in all of these
    assert [m.content for m in _chat("x").messages] == [m.content for m in
                                                          _chat("y").messages]


def test_plain_examples_hash_as_before() -> None:
    """Known answer: the digest of turns without tool fields, written out independently (the
    stores of existing in-memory datasets keep matching)."""
    ex = Example(index=4, line=5, source="<records>", schema="qa",
                 messages=(Message("user", "q ü"), Message("assistant", "a")), targets=(1,),
                 chat=False, raw={})
    rec = [4, "qa", False, [1], [["user", "q ü"], ["assistant", "a"]]]
    expected = hashlib.sha256(json.dumps(rec, ensure_ascii=False).encode() + b"\n").hexdigest()
    assert examples_digest([ex]) == expected
