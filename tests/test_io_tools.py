"""Tool calling (OpenAI/TRL format): read into messages, rendered by the chat template, the loss
on what the assistant emits (its tool calls and its answers), never on the tool's output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny_models import build_model

from constraintlab.encode import EncodeConfig, Encoder
from constraintlab.io import Message, read_examples

# A Qwen2.5-like template, reduced: tools in a system turn, assistant tool calls as
# <tool_call>{"name": ..., "arguments": ...}</tool_call>, tool answers in their own turn.
TOOL_TEMPLATE = (
    "{% if tools %}<|im_start|>system\nTools: {% for t in tools %}{{ t.function.name }} "
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% for message in messages %}"
    "{% if message.role == 'assistant' %}<|im_start|>assistant\n"
    "{% if message.content %}{{ message.content }}{% endif %}"
    "{% if message.tool_calls %}{% for call in message.tool_calls %}"
    "<tool_call>{\"name\": \"{{ call.function.name }}\", \"arguments\": "
    "{{ call.function.arguments }}}</tool_call>{% endfor %}{% endif %}<|im_end|>\n"
    "{% elif message.role == 'tool' %}<|im_start|>tool\n{{ message.content }}<|im_end|>\n"
    "{% else %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

ARGS = '{"city": "Paris"}'
CALL = {"type": "function", "id": "c1", "function": {"name": "get_weather", "arguments": ARGS}}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
RECORD = {
    "tools": TOOLS,
    "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "c1", "name": "get_weather", "content": "18 C"},
        {"role": "assistant", "content": "It is 18 C."},
    ],
}
# The rendering written out by hand (the independent reference).
HEADER = "<|im_start|>system\nTools: get_weather <|im_end|>\n"
USER = "<|im_start|>user\nWeather in Paris?<|im_end|>\n"
EMIT_CALL = f'<tool_call>{{"name": "get_weather", "arguments": {ARGS}}}</tool_call><|im_end|>\n'
TOOL = "<|im_start|>tool\n18 C<|im_end|>\n"
ANSWER = "It is 18 C.<|im_end|>\n"
FULL = (HEADER + USER + "<|im_start|>assistant\n" + EMIT_CALL + TOOL
        + "<|im_start|>assistant\n" + ANSWER)


def jsonl(tmp_path: Path, rows: list[dict]) -> Path:
    path = tmp_path / "tools.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_tool_calls_and_tool_turns_are_read(tmp_path: Path) -> None:
    data = read_examples(jsonl(tmp_path, [RECORD]), train_on="all-assistant")
    assert not data.skipped and not data.notes
    ex = data[0]
    assert ex.targets == (1, 3)
    assert ex.messages[1] == Message("assistant", "", tool_calls=(CALL,))
    assert ex.messages[2] == Message("tool", "18 C", tool_call_id="c1", name="get_weather")
    assert ex.messages[1].as_chat() == {"role": "assistant", "content": "",
                                        "tool_calls": [CALL]}
    assert ex.messages[2].as_chat() == {"role": "tool", "content": "18 C",
                                        "tool_call_id": "c1", "name": "get_weather"}
    call_text = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
    assert ex.target_text == call_text + "\n\nIt is 18 C."
    last = read_examples(jsonl(tmp_path, [RECORD]))[0]
    assert last.targets == (3,)
    assert last.input_text == ("user: Weather in Paris?\n\nassistant: " + call_text
                               + "\n\ntool: 18 C")


BAD = {
    "null content, no calls": ({"role": "assistant", "content": None},
                               "bad_content", "messages[1] has no content"),
    "calls not a list": ({"role": "assistant", "content": None, "tool_calls": {"a": 1}},
                         "bad_tool_call", "messages[1] tool_calls must be a list, not an object"),
    "call without a name": ({"role": "assistant", "content": None,
                             "tool_calls": [{"type": "function", "function": {}}]},
                            "bad_tool_call", "messages[1] tool_calls[0] must be an object with "
                            "a function name"),
    "arguments a number": ({"role": "assistant", "content": None, "tool_calls": [
        {"function": {"name": "f", "arguments": 3}}]}, "bad_tool_call",
        "messages[1] tool_calls[0] arguments must be a string or an object, not a number"),
    "calls on a user turn": ({"role": "user", "content": "x", "tool_calls": [CALL]},
                             "bad_tool_call", "messages[1] has tool_calls but role 'user'"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_malformed_tool_calls_are_findings(tmp_path: Path, name: str) -> None:
    turn, code, message = BAD[name]
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant",
                                                             "content": "a"}]}
    bad = {"messages": [{"role": "user", "content": "q"}, turn,
                        {"role": "assistant", "content": "a"}]}
    path = jsonl(tmp_path, [good, bad])
    data = read_examples(path)
    assert len(data) == 1 and [(f.code, f.line, f.index) for f in data.skipped] == [(code, 2, 1)]
    assert str(data.skipped[0]).startswith(f"{path}:2: {message}")


@pytest.fixture(scope="module")
def tool_encoder(tmp_path_factory) -> Encoder:
    from transformers import AutoTokenizer

    path = build_model("qwen3", tmp_path_factory.mktemp("tool_model") / "qwen3", seed=3)
    tok = AutoTokenizer.from_pretrained(path)
    tok.chat_template = TOOL_TEMPLATE
    tok.save_pretrained(path)
    return Encoder(EncodeConfig(model=str(path), dtype="float64", projection="none",
                                target_modules=("q_proj", "v_proj")))


def test_template_renders_tool_calls_and_loss_is_on_the_assistant(tmp_path: Path,
                                                                   tool_encoder) -> None:
    ex = read_examples(jsonl(tmp_path, [RECORD]), train_on="all-assistant")[0]
    enc = tool_encoder.encode([ex])[0]
    tok = tool_encoder.loaded.tokenizer
    assert enc.template == "chat" and enc.text == FULL
    # the target is exactly what the assistant emits: the call and the answer, each with the
    # template's end of turn, no header, nothing of the tool's output
    assert tok.decode(enc.input_ids[enc.target_mask]) == EMIT_CALL + ANSWER
    # the loss is the mean NLL of those tokens (reference: a plain forward pass of the model)
    res = tool_encoder.compute([enc])
    ids = torch.as_tensor(enc.input_ids)[None]
    with torch.no_grad():
        logits = tool_encoder.loaded.model(input_ids=ids).logits[0].double()
    logp = torch.log_softmax(logits[:-1], dim=-1)
    pos = torch.as_tensor(enc.predicted_targets())
    nll = -logp[pos - 1, ids[0, pos]]
    assert float(res.loss[0]) == pytest.approx(float(nll.mean()), rel=1e-9)


def test_plain_template_shows_tool_calls_as_text(tmp_path: Path, tool_encoder) -> None:
    from constraintlab.encode.tokenize import Renderer

    ex = read_examples(jsonl(tmp_path, [RECORD]))[0]
    plain = Renderer(tool_encoder.loaded.tokenizer, max_length=512, use_chat_template=False)
    enc, problem = plain.encode(ex, 0)
    assert problem is None and enc.template == "plain"
    call_text = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
    assert enc.text == ("user: Weather in Paris?\n\nassistant: " + call_text + "\n\n"
                        "tool: 18 C\n\nassistant: It is 18 C.<|im_end|>")
