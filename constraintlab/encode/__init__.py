"""Stage 2: examples -> constraints (tokenise, loss masks, per-example LoRA gradients,
projection, feature store).

Public API: :class:`EncodeConfig` (every setting), :func:`extract` (examples -> store on disk),
:class:`FeatureStore` (read a store), :class:`Encoder` (a loaded model for in-memory use).
"""

from constraintlab.encode.config import EncodeConfig
from constraintlab.encode.extract import Encoder, extract, plan_batches
from constraintlab.encode.store import FeatureStore

__all__ = ["EncodeConfig", "Encoder", "FeatureStore", "extract", "plan_batches"]
