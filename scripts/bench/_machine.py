"""The machine a benchmark ran on, for the recorded figures (importable by the scripts here:
``python scripts/bench/<script>.py`` puts this folder on ``sys.path``)."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (else the platform's processor string)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write_report(out: Path, report: dict, markdown: str) -> None:
    """``report`` as JSON at ``out`` and ``markdown`` beside it (``.md``), each written to a
    temporary file and renamed, so an interrupted run leaves the previous figures whole."""
    import json
    import os

    out.parent.mkdir(parents=True, exist_ok=True)
    for path, text in ((out, json.dumps(report, indent=1)), (out.with_suffix(".md"), markdown)):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
