"""Load a causal LM and its tokenizer, attach a LoRA adapter, and list the LoRA sites."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import pickle
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from constraintlab._json import plain
from constraintlab.encode.config import REFERENCE_MODEL, EncodeConfig
from constraintlab.errors import ConfigError

logger = logging.getLogger(__name__)

_TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64,
                 "bfloat16": torch.bfloat16, "float16": torch.float16}
_HASH_LIMIT = 2 << 30  # hash weight files up to 2 GiB; larger: names and sizes only


@dataclass
class LoraSite:
    """One LoRA-adapted linear map ``y = W x + s * B A x``.

    Attributes
    ----------
    name : str
        Module path in the base model (``model.layers.0.self_attn.q_proj``).
    layer : int
        Transformer block index parsed from ``name`` (-1 if none).
    kind : str
        Path after the block index (``self_attn.q_proj``, ``mlp.c_proj``): the module type.
    module : nn.Module
        peft's ``lora.Linear`` wrapper.
    lora_A, lora_B : nn.Linear
        ``A`` weight (r, in), ``B`` weight (out, r).
    scaling : float
        ``s`` (``lora_alpha / r``, or ``/ sqrt(r)`` with rsLoRA).
    trained : bool
        True when ``B != 0``: the A-gradient is non-zero and is computed.
    """

    name: str
    layer: int
    kind: str
    module: nn.Module
    lora_A: nn.Linear
    lora_B: nn.Linear
    scaling: float
    trained: bool

    @property
    def r(self) -> int:
        return self.lora_A.weight.shape[0]

    @property
    def in_features(self) -> int:
        return self.lora_A.weight.shape[1]

    @property
    def out_features(self) -> int:
        return self.lora_B.weight.shape[0]

    @property
    def n_params(self) -> int:
        return self.r * (self.in_features + self.out_features)

    @property
    def column(self) -> str:
        """Name of this site's energy column in the per-example table."""
        return f"energy:{self.layer}:{self.kind}"


@dataclass
class LoadedModel:
    """A peft-wrapped model ready for gradient extraction, with its provenance."""

    model: nn.Module
    tokenizer: Any
    sites: list[LoraSite]
    model_path: str
    info: dict

    @property
    def n_params(self) -> int:
        """P: number of trainable LoRA parameters."""
        return sum(s.n_params for s in self.sites)

    @property
    def max_positions(self) -> int | None:
        """The base model's position limit (``max_position_embeddings`` or ``n_positions``),
        None when its config states none."""
        cfg = self.model.get_base_model().config if hasattr(self.model, "get_base_model") \
            else self.model.config
        for name in ("max_position_embeddings", "n_positions", "n_ctx"):
            value = getattr(cfg, name, None)
            if isinstance(value, int) and value > 0:
                return value
        return None

    def max_length(self, requested: int) -> int:
        """``requested`` (``max_length``), clamped to :attr:`max_positions`: sequences never
        run past the positions the model was trained on. A clamp is logged once per load."""
        limit = self.max_positions
        if limit is None or requested <= limit:
            return requested
        if not getattr(self, "_clamp_logged", False):
            # a max_length the user chose is worth a warning; the default is cut quietly
            chosen = requested != EncodeConfig.__dataclass_fields__["max_length"].default
            logger.log(logging.WARNING if chosen else logging.INFO,
                       "--max-length %d is above the model's %d positions: sequences are cut "
                       "at %d tokens (truncated examples are counted and reported)", requested,
                       limit, limit)
            self._clamp_logged = True
        return limit


def resolve_model(name: str) -> str:
    """Map ``constraintlab-reference`` to the packaged directory; other names pass through."""
    if name != REFERENCE_MODEL:
        return name
    path = Path(__file__).resolve().parent.parent / "reference" / "weights"
    if not (path / "config.json").is_file():
        raise ConfigError("the built-in reference model is not installed; pass --model ...")
    return str(path)


def torch_dtype(config: EncodeConfig) -> torch.dtype | str:
    return "auto" if config.dtype == "auto" else _TORCH_DTYPES[config.dtype]


def weights_digest(path: str) -> dict:
    """sha256 over a local model directory's weight files (names and sizes only if > 2 GiB)."""
    p = Path(path)
    if not p.is_dir():
        return {"kind": "hub"}
    files = sorted(f for f in p.iterdir() if f.suffix in (".safetensors", ".bin", ".pt"))
    total = sum(f.stat().st_size for f in files)
    h = hashlib.sha256()
    if total <= _HASH_LIMIT:
        for f in files:
            h.update(f.name.encode())
            with f.open("rb") as fh:
                for chunk in iter(lambda fh=fh: fh.read(1 << 22), b""):
                    h.update(chunk)
        return {"kind": "sha256", "sha256": h.hexdigest()}
    for f in files:
        h.update(f"{f.name}:{f.stat().st_size}".encode())
    return {"kind": "names-and-sizes", "sha256": h.hexdigest()}


def _lora_config(config: EncodeConfig, model: nn.Module):
    from peft import LoraConfig

    if config.adapter_config is not None:
        path = Path(config.adapter_config)
        if path.is_dir():
            path = path / "adapter_config.json"
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise ConfigError(f"cannot read adapter config {path}: {err}") from err
        if raw.get("peft_type", "LORA") != "LORA":
            raise ConfigError(f"{path}: only LoRA adapters are supported, got {raw['peft_type']}")
        known = set(LoraConfig.__dataclass_fields__)
        kwargs = {k: v for k, v in raw.items() if k in known}
        kwargs.pop("base_model_name_or_path", None)
        kwargs.update(lora_dropout=0.0, inference_mode=False)
        try:
            return LoraConfig(**kwargs)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{path}: invalid LoRA configuration: {err}") from err
    targets = list(config.target_modules) if config.target_modules else None
    if targets == ["all-linear"]:
        targets = "all-linear"
    return LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=0.0,
                      target_modules=targets, task_type="CAUSAL_LM", bias="none")


def load_model(config: EncodeConfig) -> LoadedModel:
    """Load model + tokenizer, attach LoRA and freeze everything.

    The LoRA A matrices are initialised under ``torch.random.fork_rng`` seeded with
    ``config.lora_init_seed`` (global RNG state untouched), so the same seed gives the same adapter.

    Returns
    -------
    LoadedModel
        ``model`` in eval mode on ``config.device`` with every parameter frozen (gradients are
        computed by hooks, not accumulated into ``.grad``).
    """
    path = resolve_model(config.model)
    with _quiet_transformers():
        return _load(config, path)


@contextlib.contextmanager
def _quiet_transformers():
    """No per-tensor "Loading weights" bar and no deprecation chatter from a library call we do
    not make ourselves (transformers/peft internals); our own progress bar reports the work."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\.")
            yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def _load(config: EncodeConfig, path: str) -> LoadedModel:
    from peft import PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(
            path, revision=config.revision, trust_remote_code=config.trust_remote_code)
        base = AutoModelForCausalLM.from_pretrained(
            path, revision=config.revision, dtype=torch_dtype(config),
            trust_remote_code=config.trust_remote_code)
    except pickle.UnpicklingError as err:
        raise ConfigError(_pickle_refused(config.model, path, err)) from err
    except (OSError, ValueError, RuntimeError) as err:
        raise ConfigError(f"cannot load model {config.model!r}: {err}") from err
    except Exception as err:
        if type(err).__name__ == "SafetensorError":   # a truncated or damaged .safetensors file
            raise ConfigError(f"cannot load model {config.model!r}: its safetensors weights "
                              f"are damaged or incomplete ({err}); download them again") from err
        raise
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(f"model {config.model!r} has no fast tokenizer (needed for offsets)")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.lora_init_seed)
        if config.adapter is not None:
            try:
                model = PeftModel.from_pretrained(base, config.adapter, is_trainable=True)
            except (OSError, ValueError) as err:
                raise ConfigError(f"cannot load adapter {config.adapter!r}: {err}") from err
        else:
            try:
                model = get_peft_model(base, _lora_config(config, base))
            except ValueError as err:
                raise ConfigError(f"cannot attach LoRA to {config.model!r}: {err}") from err
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    model.to(torch.device(config.device))
    sites = _find_sites(model)
    peft_cfg = model.peft_config[model.active_adapter]
    adapter_dict = plain(peft_cfg.to_dict())
    h = hashlib.sha256()
    for s in sites:
        for w in (s.lora_A.weight, s.lora_B.weight):
            h.update(w.detach().to("cpu", torch.float64).contiguous().numpy().tobytes())
    info = {
        "name": config.model,
        "path": path,
        "revision": config.revision,
        "commit": getattr(model.get_base_model().config, "_commit_hash", None),
        "architecture": type(model.get_base_model()).__name__,
        "weights": weights_digest(path),
        "adapter_config": adapter_dict,
        "adapter_weights_sha256": h.hexdigest(),
        "trained_adapter": any(s.trained for s in sites),
    }
    logger.info("loaded %s with %d LoRA sites, P=%d", config.model, len(sites),
                sum(s.n_params for s in sites))
    return LoadedModel(model=model, tokenizer=tokenizer, sites=sites, model_path=path, info=info)


def _pickle_refused(name: str, path: str, err: Exception) -> str:
    """The message for torch's weights-only refusal of a pickled checkpoint."""
    detail = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
    reason = next((line.strip() for line in detail.splitlines()
                   if "WeightsUnpickler error" in line or "Unsupported global" in line), None)
    if reason is None:
        reason = detail.strip().splitlines()[-1] if detail.strip() else type(err).__name__
    files = ", ".join(sorted(f.name for f in Path(path).glob("*.bin"))) \
        if Path(path).is_dir() else "its weights"
    return (f"cannot load model {name!r}: {files} is a pickled PyTorch checkpoint that torch "
            f"refuses to load safely ({reason[:300]}). constraintlab loads weights only in "
            "weights-only mode and never runs pickled code. Use a copy of the model "
            "published with model.safetensors, or convert this one to safetensors yourself, "
            "only if you trust its source: load it there (torch.load with weights_only=False, "
            "or the tool that made it) and save it with save_pretrained(new_dir, "
            "safe_serialization=True); then pass --model new_dir")


def _find_sites(model: nn.Module) -> list[LoraSite]:
    from peft.tuners.lora import Linear as LoraLinear
    from peft.tuners.lora import LoraLayer

    adapter = model.active_adapter
    cfg = model.peft_config[adapter]
    if getattr(cfg, "bias", "none") != "none" or getattr(cfg, "modules_to_save", None):
        raise ConfigError("only plain LoRA adapters are supported (bias='none', no "
                          "modules_to_save): other trainable parameters are not LoRA factors")
    prefix = "base_model.model."
    sites = []
    for name, module in model.named_modules():
        if not isinstance(module, LoraLayer):
            continue
        short = name[len(prefix):] if name.startswith(prefix) else name
        if not isinstance(module, LoraLinear):
            raise ConfigError(f"LoRA on {short} ({type(module).__name__}) is not supported: "
                              "only linear layers and GPT-2 Conv1D")
        if adapter in getattr(module, "lora_variant", {}):
            raise ConfigError(f"{short}: LoRA variants (DoRA, ...) are not supported")
        if getattr(module, "lora_bias", {}).get(adapter, False):
            raise ConfigError(f"{short}: lora_bias is not supported")
        if module.merged:
            raise ConfigError(f"{short}: the adapter is merged into the weights")
        match = re.search(r"\.(\d+)\.", f".{short}")
        if match:
            layer, kind = int(match.group(1)), f".{short}"[match.end():]
        else:
            layer, kind = -1, short
        lora_B = module.lora_B[adapter]
        sites.append(LoraSite(
            name=short, layer=layer, kind=kind, module=module, lora_A=module.lora_A[adapter],
            lora_B=lora_B, scaling=float(module.scaling[adapter]),
            trained=bool(torch.any(lora_B.weight != 0))))
    if not sites:
        raise ConfigError("no LoRA module was attached: check target_modules")
    return sites
