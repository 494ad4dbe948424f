"""The built-in offline reference model ``constraintlab-reference``.

A small Qwen3 causal LM (5.48 M parameters, byte-level BPE tokenizer with a ChatML chat template)
trained from scratch on GSM8K train by :mod:`constraintlab.reference.train` and shipped inside
the package, so ``analyze`` runs without a model download or network. Its directory
(:func:`weights_dir`) is an ordinary Hugging Face model folder::

    AutoModelForCausalLM.from_pretrained(weights_dir(), local_files_only=True)
    AutoTokenizer.from_pretrained(weights_dir(), local_files_only=True)

Reports name it through :func:`model_info`.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from constraintlab._hashing import file_sha256

REFERENCE_MODEL_NAME = "constraintlab-reference"
REFERENCE_MODEL_VERSION = "1"
REFERENCE_MODEL_NOTE = (
    "results describe this reference model; pass --model to analyse with your own"
)

_REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")

__all__ = [
    "REFERENCE_MODEL_NAME",
    "REFERENCE_MODEL_NOTE",
    "REFERENCE_MODEL_VERSION",
    "is_installed",
    "model_info",
    "weights_dir",
]


def weights_dir() -> Path:
    """Folder of the shipped model (config, safetensors weights, tokenizer, training.json)."""
    return Path(__file__).resolve().parent / "weights"


def is_installed() -> bool:
    """True when every file needed to load the reference model is present."""
    d = weights_dir()
    return all((d / name).is_file() for name in _REQUIRED_FILES)


@lru_cache(maxsize=4)
def _sha256(path: Path, mtime_ns: int, size: int) -> str:
    """:func:`~constraintlab._hashing.file_sha256` of ``path``, once per version of the file
    (its modification time and size are the cache key)."""
    return file_sha256(path)


def model_info() -> dict[str, Any]:
    """What a report says about the reference model.

    Returns
    -------
    dict
        ``name``, ``version``, ``sha256`` (of ``model.safetensors``), ``n_params``, ``path``,
        ``note`` (results describe this model; ``--model`` gives the user's own) and
        ``training`` (data, steps, tokens, time, losses from ``training.json``; empty if absent).

    Raises
    ------
    FileNotFoundError
        If the weights are not installed (see :func:`is_installed`).
    """
    d = weights_dir()
    weights = d / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"reference model weights missing: {weights}")
    stat = weights.stat()
    training: dict[str, Any] = {}
    summary_path = d / "training.json"
    if summary_path.is_file():
        full = json.loads(summary_path.read_text(encoding="utf-8"))
        keys = ("data", "steps", "tokens_seen", "train_seconds", "final_train_loss",
                "heldout", "settings", "command", "torch", "transformers")
        training = {k: full[k] for k in keys if k in full}
        if "data" in training:
            training["data"] = [
                {k: s[k] for k in ("name", "use", "licence") if k in s} for s in training["data"]
            ]
    return {
        "name": REFERENCE_MODEL_NAME,
        "version": REFERENCE_MODEL_VERSION,
        "sha256": _sha256(weights, stat.st_mtime_ns, stat.st_size),
        "n_params": _n_params(weights),
        "path": str(d),
        "note": REFERENCE_MODEL_NOTE,
        "training": training,
    }


def _n_params(weights: Path) -> int:
    """Number of parameters stored in a safetensors file (tied weights are stored once)."""
    from safetensors import safe_open

    total = 0
    with safe_open(str(weights), framework="numpy") as f:
        for key in f.keys():
            shape = f.get_slice(key).get_shape()
            n = 1
            for s in shape:
                n *= s
            total += n
    return total
