"""Make ``benchmarks/peers/_runner_common.py`` importable from the runners in this folder."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "peers"))
