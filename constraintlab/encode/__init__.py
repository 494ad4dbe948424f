"""Stage 2: examples -> constraints (tokenise, loss masks, per-example LoRA gradients,
projection, feature store).

Public API: :class:`EncodeConfig` (every setting), :func:`extract` (examples -> store on disk),
:class:`FeatureStore` (read a store), :class:`Encoder` (a loaded model for in-memory use).

What is stored per example i (see :mod:`.gradients` for the derivation, :mod:`.store` for files):

- ``features[i]`` (k,): ``S g_i``, the seeded JL projection (:mod:`.projection`) of the exact
  gradient ``g_i`` (P,) of ``l_i`` = mean NLL over i's target tokens w.r.t. every LoRA A and B.
- ``loss``, ``n_target_tokens``, ``n_truncated``, ``grad_norm`` = ``||g_i||`` before projection,
  ``energy:<layer>:<module>`` = squared norm of ``g_i`` restricted to one LoRA site.
- ``input_factors[i]`` (d,): the final hidden state (after the model's last norm, the input of
  ``lm_head``) averaged over the example's input (non-target) tokens: what the model sees.
- ``output_factors[i]`` (d,): ``dl_i/dh`` summed over the positions that predict target tokens,
  ``= mean_t W_U^T (softmax(z_t) - onehot(y_t))``: the error the loss sends back into the
  final hidden state, i.e. where the example pushes the model.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from constraintlab.encode.config import EncodeConfig
from constraintlab.encode.store import FeatureStore

if TYPE_CHECKING:
    from constraintlab.encode.dispatch import extract
    from constraintlab.encode.extraction import Encoder, plan_batches

__all__ = ["EncodeConfig", "Encoder", "FeatureStore", "extract", "plan_batches"]


def __getattr__(name: str) -> Any:
    # torch and transformers load on first use, so the CLI and `import constraintlab` stay fast
    if name == "extract":
        return importlib.import_module("constraintlab.encode.dispatch").extract
    if name in ("Encoder", "plan_batches"):
        return getattr(importlib.import_module("constraintlab.encode.extraction"), name)
    raise AttributeError(f"module 'constraintlab.encode' has no attribute {name!r}")
