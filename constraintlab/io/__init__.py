"""Stage 1: records -> examples. Read files and in-memory data, validate once, here.

A file that cannot be read raises :class:`~constraintlab.errors.InputError`; a record that can
be read but not used is a :class:`~constraintlab.errors.Finding` in ``ExampleSet.skipped`` (an
odd but usable one in ``ExampleSet.notes``). Reason codes: :mod:`constraintlab.io.reader`; size
limits (``MAX_RECORD_BYTES``, ``MAX_DOCUMENT_BYTES``, ``MAX_DEPTH``, ``MAX_INT_DIGITS``):
:mod:`constraintlab.io.records`.
"""

from constraintlab.io.config import ReadConfig
from constraintlab.io.example import ROLES, SCHEMAS, Example, Message
from constraintlab.io.reader import ExampleSet, read_examples

__all__ = ["ROLES", "SCHEMAS", "Example", "ExampleSet", "Message", "ReadConfig", "read_examples"]
