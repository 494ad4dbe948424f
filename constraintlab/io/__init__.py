"""Stage 1: records -> examples. Read files and in-memory data, validate once, here."""

from constraintlab.io.config import ReadConfig
from constraintlab.io.example import ROLES, SCHEMAS, Example, Message
from constraintlab.io.reader import ExampleSet, read_examples

__all__ = ["ROLES", "SCHEMAS", "Example", "ExampleSet", "Message", "ReadConfig", "read_examples"]
