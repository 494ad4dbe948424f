"""Stage 2: examples -> constraints (tokenise, loss masks, per-example LoRA gradients, projection,
feature store)."""
