"""The SMART on FHIR treatment-timeline app (issue #10): static files served at /smart/ and the
timeline document (`app.smart.timeline`) they draw.

`launch_url` is the URL cards link to (CDS Hooks link type "smart"): the EHR appends `iss` and
`launch` (SMART App Launch 2.0, EHR launch). The embedded demo FHIR server has no authorization
server and so no launch context: for it the link names the (synthetic) demo patient, which the
SMART client (`fhirclient`) uses in its open-server mode.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

STATIC_DIR = Path(__file__).parent
LAUNCH_PATH = "/smart/launch.html"


def launch_url(public_base_url: str, *, fhir_server: str | None, patient_id: str | None,
               embedded_fhir: bool) -> str:
    base = public_base_url.rstrip("/")
    url = base + LAUNCH_PATH
    demo_server = embedded_fhir and fhir_server is not None and fhir_server.rstrip("/") == f"{base}/fhir"
    if demo_server and patient_id:
        url += "?" + urlencode({"patientId": patient_id})
    return url
