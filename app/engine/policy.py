"""Engine policy: configuration as data (stub: completed by the engine work, issue #3)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Policy:
    dose_tolerance: float = 0.05  # D-4: relative difference allowed between ordered and expected
