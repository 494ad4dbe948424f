"""constraintlab: a fine-tuning dataset seen as a system of equations on the LoRA adapter."""

from constraintlab._version import __version__

__all__ = ["__version__"]
