"""The ``report.json`` contract, assembled: the frame file plus each section's own schema.

``report/report.schema.json`` is the frame: the run's own keys (``schema_version``, ``tool``,
``run``, ``model``, ``adapter``, ``projection``) and the shared ``$defs``. Every section that a
module of :mod:`constraintlab.report.sections` presents declares its JSON Schema there
(``SCHEMA``, passed as ``Section(schema=...)``), beside its presentation, so adding an analyzer
does not touch a shared contract file. :func:`report_schema` puts them together; every report
directory carries the result as ``report.schema.json`` (:meth:`Report.save`).
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

from constraintlab.report.sections import sections

__all__ = ["FRAME", "report_schema"]

FRAME = Path(__file__).resolve().parent / "report.schema.json"


@functools.cache
def _assembled() -> dict[str, Any]:
    schema = json.loads(FRAME.read_text(encoding="utf-8"))
    for s in sections():
        if s.schema is None:
            raise ValueError(f"report section {s.name!r} declares no schema")
        if s.name in schema["properties"]:
            raise ValueError(f"report section {s.name!r} is declared by the frame and by its "
                             "section module")
        schema["properties"][s.name] = dict(s.schema)
        schema["required"].append(s.name)
    return schema


def report_schema() -> dict[str, Any]:
    """The whole JSON Schema of ``report.json`` (a fresh copy: the caller may change it).

    Raises
    ------
    ValueError
        A section module without a schema, or a section the frame declares too.
    """
    return copy.deepcopy(_assembled())
