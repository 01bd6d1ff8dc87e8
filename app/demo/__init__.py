"""Synthetic demo patients for the embedded FHIR server, and example hook requests.

Data files (`data/<patient id>.json`, Bundles of type collection) hold dates as tokens
"${date-7}" = the UTC date 7 days before `now`, so the demo works on any day. The requests under
`requests/` carry no dates (the draft order's dose date is the request time). Names are fake.
Regenerate the files with `python -m app.demo._generate`; README.md lists the patients and the
decisions the label expects for each.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
DATA_DIR = HERE / "data"
REQUESTS_DIR = HERE / "requests"
DEFAULT_FHIR_SERVER = "http://127.0.0.1:8080/fhir"
_TOKEN = re.compile(r"\$\{date([+-]\d+)\}")


def demo_patient_ids() -> list[str]:
    return sorted(p.stem for p in DATA_DIR.glob("*.json"))


def demo_request_names() -> list[str]:
    return sorted(p.stem for p in REQUESTS_DIR.glob("*.json"))


@lru_cache
def _raw(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def fill_dates(text: str, now: datetime) -> str:
    """Replace "${date+N}" tokens with the ISO date N days from `now` (UTC date of `now`)."""
    today = now.date()
    return _TOKEN.sub(lambda m: (today + timedelta(days=int(m.group(1)))).isoformat(), text)


def load_patient(patient_id: str, now: datetime) -> list[dict[str, Any]]:
    bundle = json.loads(fill_dates(_raw(DATA_DIR / f"{patient_id}.json"), now))
    return [entry["resource"] for entry in bundle["entry"]]


def load_demo_resources(now: datetime) -> list[dict[str, Any]]:
    """Every demo patient's resources, with dates relative to `now`."""
    return [r for pid in demo_patient_ids() for r in load_patient(pid, now)]


def demo_request(name: str, now: datetime, base_url: str) -> dict[str, Any]:
    """An example hook request: `name` is "hepatic", "demo-hepatic", "hepatic-order-sign" or
    "hepatic-patient-view"; `base_url` is the service's base URL (fhirServer = base_url + "/fhir")."""
    stem = name.removeprefix("demo-")
    path = REQUESTS_DIR / f"{stem}.json"
    if not path.exists():
        path = REQUESTS_DIR / f"{stem}-order-sign.json"
    if not path.exists():
        raise KeyError(f"no demo request '{name}'; known: {', '.join(demo_request_names())}")
    request = json.loads(fill_dates(_raw(path), now))
    request["fhirServer"] = base_url.rstrip("/") + "/fhir"
    return request
