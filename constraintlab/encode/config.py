"""Every setting of the encoder, in one frozen dataclass."""

from __future__ import annotations

from constraintlab._config import (
    TYPE_ONLY,
    Interval,
    Options,
    Pattern,
    Settings,
    check_fields,
    setting,
    settings_class,
)
from constraintlab.errors import ConfigError

DTYPES: tuple[str, ...] = ("auto", "float32", "float64", "bfloat16", "float16")
PROJECTIONS: tuple[str, ...] = ("rademacher", "gaussian", "none")
CHECKPOINTING: tuple[str, ...] = ("auto", "on", "off")
REFERENCE_MODEL = "constraintlab-reference"

_CAL = "calibrated: see docs/calibration.md#"
_TEXT = Pattern(r"(?s).*\S.*", "a non-blank string")


@settings_class
class EncodeConfig(Settings):
    """Settings of ``extract``: model, adapter, tokenisation, batching, projection.

    Each field is declared once (default, check, doc); the CLI's encode flags are generated
    from these declarations (:func:`constraintlab.cli._common.add_encode_options`).
    """

    model: str = setting(REFERENCE_MODEL, _TEXT, "Hub id or local directory of a causal LM "
                         "(default: the built-in offline reference model).")
    revision: str | None = setting(None, TYPE_ONLY, "Hub revision (branch, tag or commit) of "
                                   "the model.")
    dtype: str = setting("float32", Options(DTYPES), "Weights and activations; gradients and "
                         "projections accumulate in float32 for half-precision models.")
    device: str = setting("cpu", TYPE_ONLY, "Torch device: cpu, cuda, cuda:1, mps (checked "
                          "against this machine before any model loads).")
    trust_remote_code: bool = setting(False, TYPE_ONLY, "Allow the model's own code from the "
                                      "hub (off unless asked).")
    lora_r: int = setting(8, Interval(1, None), "LoRA rank (ignored with adapter_config or a "
                          "trained adapter).")
    lora_alpha: float = setting(16.0, Interval(0, None, "neither"), "LoRA alpha; the adapter "
                                "output is scaled by lora_alpha / lora_r.")
    lora_dropout: float = setting(0.0, Interval(0, 1, "left"), "Recorded only: gradients are "
                                  "taken without dropout (the expected gradient).")
    target_modules: tuple[str, ...] | None = setting(None, _TEXT, "Modules that get LoRA; None: "
                                                     "peft's default for the architecture; "
                                                     "all-linear for every linear layer.")
    adapter_config: str | None = setting(None, TYPE_ONLY, "An adapter_config.json (or its "
                                         "folder) to analyse with: a fresh adapter, B = 0.")
    adapter: str | None = setting(None, TYPE_ONLY, "Folder of an already-trained peft LoRA "
                                  "adapter to analyse at.")
    max_length: int = setting(2048, Interval(2, None), "Longest sequence in tokens; longer "
                              "examples keep their first max_length tokens (dropped counted).")
    batch_size: int | None = setting(None, Interval(1, None), "Most examples per forward/"
                                     "backward; None: 16 on CPU, no limit on a GPU.")
    max_batch_tokens: int | None = setting(None, Interval(1, None), "Most padded tokens per "
                                           "batch; None: 8192 on CPU, from free memory on CUDA, "
                                           "never below max_length; " + _CAL + "batching.")
    activation_checkpointing: str = setting("auto", Options(CHECKPOINTING), "Recompute "
                                            "activations in the backward to save memory (auto: "
                                            "only when one max_length example would not fit).")
    unit_size: int = setting(1024, Interval(1, None), "Examples per work unit (tokenised, "
                             "batched and stored on its own; part of the store's identity).")
    projection: str = setting("rademacher", Options(PROJECTIONS), "Seeded Khatri-Rao JL map of "
                              "the LoRA gradient to k dims (rademacher, gaussian) or none (raw "
                              "P-dim gradient).")
    k: int = setting(1024, Interval(1, None), "Projected dimension (cosine noise floor "
                     "1/sqrt(k)); " + _CAL + "k.")
    seed: int = setting(0, Interval(0, None), "Projection seed: same seed, same features on "
                        "any machine.")
    lora_init_seed: int = setting(0, Interval(0, None), "Seed of the fresh adapter's A "
                                  "initialisation (B = 0), which defines the gradients.")
    use_chat_template: bool = setting(True, TYPE_ONLY, "Render chat examples with the "
                                      "tokenizer's chat template when it has one (else the "
                                      "plain template).")

    def __post_init__(self) -> None:
        if isinstance(self.target_modules, str):
            object.__setattr__(self, "target_modules", (self.target_modules,))
        check_fields(self)
        if self.target_modules == ():
            raise ConfigError("target_modules must be a non-empty list of module names")
        if self.max_batch_tokens is not None and self.max_batch_tokens < self.max_length:
            raise ConfigError(
                f"max_batch_tokens ({self.max_batch_tokens}) must be >= max_length "
                f"({self.max_length}) so that the longest example fits in a batch")
        if self.adapter is not None and self.adapter_config is not None:
            raise ConfigError("give either adapter (a trained adapter directory) or "
                              "adapter_config (a configuration to initialise), not both")


def _looks_like_path(name: str) -> bool:
    """True for a model name that can only be a local path (``./m``, ``/x/m``, ``~/m``,
    ``a/b/c``, ``m/``, ``C:\\m``), never a hub id (``org/name``)."""
    return (name.startswith((".", "/", "~", "\\")) or name.endswith(("/", "\\"))
            or name.count("/") > 1 or "\\" in name or (len(name) > 1 and name[1] == ":"))


def check_device(device: str) -> str | None:
    """What is wrong with torch device ``device`` on this machine, or None when it is there.

    ``cpu`` is always there (torch is not imported for it); ``cuda``/``cuda:N`` need that many
    CUDA devices, ``mps`` an available Metal backend; anything else must parse as a
    ``torch.device``.
    """
    if device == "cpu":
        return None
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        return "not a torch device (expected cpu, cuda, cuda:N or mps)"
    if dev.type == "cpu":
        return None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = dev.index or 0
        if index >= count:
            return (f"this machine has {count or 'no'} CUDA device{'' if count == 1 else 's'}"
                    + (f" (cuda:0 to cuda:{count - 1})" if count > 1 else "")
                    + "; use --device cpu" + (" or a valid index" if count else ""))
        return None
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            return "the Apple Metal (mps) backend is not available on this machine; use cpu"
        return None
    return f"device type {dev.type!r} is not supported; use cpu, cuda, cuda:N or mps"


def check_environment(config: EncodeConfig) -> list[tuple[str, str]]:
    """What in ``config`` this machine cannot honour, checked before any model is loaded.

    Returns
    -------
    list of (field, problem)
        ``device`` not present (:func:`check_device`); ``model`` that looks like a local path
        (``./m``, ``/abs/m``, ``a/b/c``; a hub id is ``org/name``) but is not a directory;
        ``adapter`` / ``adapter_config`` that do not exist. Empty when all is well.
    """
    from pathlib import Path

    problems = []
    device_problem = check_device(config.device)
    if device_problem:
        problems.append(("device", device_problem))
    if config.model != REFERENCE_MODEL and _looks_like_path(config.model):
        path = Path(config.model).expanduser()
        if not path.is_dir():
            problems.append(("model", "no such directory" if not path.exists()
                             else "not a directory (give the model's folder)"))
    if config.adapter is not None and not Path(config.adapter).expanduser().is_dir():
        problems.append(("adapter", "no such directory (a trained peft adapter's folder)"))
    if config.adapter_config is not None and not Path(config.adapter_config).expanduser().exists():
        problems.append(("adapter_config", "no such file"))
    return problems
