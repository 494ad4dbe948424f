"""Every setting of the encoder, in one frozen dataclass."""

from __future__ import annotations

from dataclasses import dataclass

from constraintlab._config import Interval, Options, Settings, check_fields
from constraintlab.errors import ConfigError

DTYPES: tuple[str, ...] = ("auto", "float32", "float64", "bfloat16", "float16")
PROJECTIONS: tuple[str, ...] = ("rademacher", "gaussian", "none")
CHECKPOINTING: tuple[str, ...] = ("auto", "on", "off")
REFERENCE_MODEL = "constraintlab-reference"

#: Valid values of each :class:`EncodeConfig` field (types from the annotations; rules between
#: fields are in ``__post_init__``).
CONSTRAINTS: dict[str, Interval | Options] = {
    "dtype": Options(DTYPES), "lora_r": Interval(1, None),
    "lora_alpha": Interval(0, None, "neither"), "lora_dropout": Interval(0, 1, "left"),
    "max_length": Interval(2, None), "batch_size": Interval(1, None),
    "max_batch_tokens": Interval(1, None), "unit_size": Interval(1, None),
    "projection": Options(PROJECTIONS), "activation_checkpointing": Options(CHECKPOINTING),
    "k": Interval(1, None), "seed": Interval(0, None), "lora_init_seed": Interval(0, None),
}


@dataclass(frozen=True)
class EncodeConfig(Settings):
    """Settings of ``extract``: model, adapter, tokenisation, batching, projection.

    Attributes
    ----------
    model : str, default ``"constraintlab-reference"``
        Hugging Face hub id or local directory of a causal LM. ``"constraintlab-reference"`` is the
        built-in offline model in ``constraintlab/reference/weights/``.
    revision : str or None, default None
        Hub revision (branch, tag or commit) of ``model``.
    dtype : {"float32", "float64", "bfloat16", "float16", "auto"}, default ``"float32"``
        Weights and activations. Per-example gradients and projections are accumulated in
        float32 for half-precision models (float64 for float64 models).
    device : str, default ``"cpu"``
        Torch device (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``).
    trust_remote_code : bool, default False
        Passed to ``from_pretrained``; off unless asked.
    lora_r : int, default 8
        LoRA rank (ignored with ``adapter_config`` / ``adapter``).
    lora_alpha : float, default 16
        LoRA alpha; the adapter output is scaled by ``lora_alpha / lora_r``.
    lora_dropout : float, default 0.0
        Recorded only: gradients are always taken without dropout (the expected gradient).
    target_modules : tuple of str or None, default None
        Modules that get LoRA; None uses peft's default for the architecture
        (``q_proj, v_proj`` for Llama/Qwen, ``c_attn`` for GPT-2). ``("all-linear",)`` is allowed.
    adapter_config : str or None, default None
        Path to an ``adapter_config.json`` (or its directory): analyse with exactly the LoRA
        configuration you will train with. The adapter is freshly initialised (B = 0).
    adapter : str or None, default None
        Directory of an already-trained peft LoRA adapter: analyse at that point (A and B
        gradients both non-zero).
    max_length : int, default 2048
        Longest token sequence; longer examples keep their first ``max_length`` tokens (the
        number dropped is recorded per example and reported). An example left with no target
        token is an input error.
    batch_size : int or None, default None
        Most examples in one forward/backward. None: 16 on CPU, no limit besides
        ``max_batch_tokens`` on a GPU (:func:`constraintlab.encode.budget.resolve_batching`).
    max_batch_tokens : int or None, default None
        Most padded tokens (batch rows x longest row) in one forward/backward. Examples are
        sorted by length, so buckets hold examples of similar length. None: chosen for the
        device (:func:`constraintlab.encode.budget.resolve_batching`): 8192 on CPU; on CUDA from
        the free device memory and the activation bytes per token measured on a probe batch,
        capped so that peak memory stays within weights + 25 % + 6 GiB; never below
        ``max_length``. An explicit value always wins. A batch that runs out of memory is split
        in halves and the run goes on (the results are the same, see :mod:`.gradients`).
    activation_checkpointing : {"auto", "on", "off"}, default ``"auto"``
        Recompute the frozen model's activations in the backward (Hugging Face gradient
        checkpointing) instead of keeping them: less memory, about one more forward of time.
        ``auto`` turns it on only when a batch of one ``max_length`` example would not fit in
        the memory budget without it (CUDA only; never on CPU).
    unit_size : int, default 1024
        Examples per work unit. The data is cut into units of ``unit_size`` consecutive
        examples; each unit is tokenised, planned (sorted by length and packed into batches
        inside the unit) and stored on its own, so one process and any number of Ray workers
        (``--ray``) compute exactly the same batches, and extraction starts without tokenising
        the whole dataset. Changing it changes the batches, hence the store's identity.
    projection : {"rademacher", "gaussian", "none"}, default ``"rademacher"``
        ``rademacher``/``gaussian``: seeded Khatri-Rao Johnson-Lindenstrauss map of the full LoRA
        gradient into ``k`` dims, applied module by module to the rank-r gradient factors (never
        a P x k matrix; see :mod:`constraintlab.encode.projection`). ``none``: keep the raw
        P-dim gradient (small models, checking).
    k : int, default 1024
        Projected dimension. Cosines between unrelated gradients then have a noise floor of
        about ``1/sqrt(k)`` = 0.031 (a threshold of 0.15 sits ~5 noise sd above it), a (N, k)
        float32 store of 20k examples is 80 MB and fits the all-pairs kernels, and rank is
        resolved up to 1024 constraints. Raise it (e.g. 4096/8192, as LESS) for finer ranks.
    seed : int, default 0
        Seeds the projection matrices: same seed, same matrices and same features on any
        machine; another seed is an independent sketch of the same gradients.
    lora_init_seed : int, default 0
        Seeds the LoRA A initialisation of a fresh adapter (B = 0), which defines the gradients
        themselves (A sketches the input side of the B-gradient).
    use_chat_template : bool, default True
        Render conversational examples with the tokenizer's chat template when it has one;
        otherwise (or when False) use the plain template (see :mod:`.tokenize`).
    """

    model: str = REFERENCE_MODEL
    revision: str | None = None
    dtype: str = "float32"
    device: str = "cpu"
    trust_remote_code: bool = False
    lora_r: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    target_modules: tuple[str, ...] | None = None
    adapter_config: str | None = None
    adapter: str | None = None
    max_length: int = 2048
    batch_size: int | None = None
    max_batch_tokens: int | None = None
    activation_checkpointing: str = "auto"
    unit_size: int = 1024
    projection: str = "rademacher"
    k: int = 1024
    seed: int = 0
    lora_init_seed: int = 0
    use_chat_template: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.target_modules, str):
            object.__setattr__(self, "target_modules", (self.target_modules,))
        check_fields(self, CONSTRAINTS)
        if not self.model:
            raise ConfigError("model must be a hub id or a local directory")
        if self.target_modules is not None and not (
                self.target_modules and all(self.target_modules)):
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
