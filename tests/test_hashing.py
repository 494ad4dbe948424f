"""The one file hash and the one JSON hash (constraintlab._hashing), against hashlib on the
bytes they stand for, and the one wording of a value's type in messages (_text.type_name)."""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest

from constraintlab._hashing import CHUNK, file_sha256, json_sha256
from constraintlab._text import type_name


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 7])
def test_file_sha256_is_the_sha256_of_the_bytes(tmp_path, size) -> None:
    blob = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    path = tmp_path / "f.bin"
    path.write_bytes(blob)
    want = hashlib.sha256(blob).hexdigest()
    assert file_sha256(path) == file_sha256(str(path)) == want
    # an open file is hashed from where it stands
    with open(path, "rb") as fh:
        fh.read(3)
        assert file_sha256(fh) == hashlib.sha256(blob[3:]).hexdigest()
    assert file_sha256(io.BytesIO(blob)) == want


def test_json_sha256_is_the_sha256_of_sorted_key_json() -> None:
    obj = {"b": [1, 2.5, "\u00e9\u20ac"], "a": None, "c": {"z": True, "y": 0}}
    text = '{"a": null, "b": [1, 2.5, "\\u00e9\\u20ac"], "c": {"y": 0, "z": true}}'
    assert json.dumps(obj, sort_keys=True) == text
    assert json_sha256(obj) == hashlib.sha256(text.encode("ascii")).hexdigest()
    assert json_sha256({"a": None, "c": {"y": 0, "z": True}, "b": [1, 2.5, "\u00e9\u20ac"]}) \
        == json_sha256(obj)


@pytest.mark.parametrize(("value", "toml", "json_"), [
    ({}, "a table", "an object"), ([], "an array", "an array"), ("", "a string", "a string"),
    (True, "a boolean", "a boolean"), (3, "an integer", "a number"),
    (2.5, "a float", "a number"), (None, "null", "null"), (b"x", "bytes", "bytes")])
def test_type_name_words(value, toml, json_) -> None:
    assert type_name(value) == toml
    assert type_name(value, json=True) == json_
