"""`GET /`: what the service is, its services, the demo patients with a one-click CDS Hooks sandbox
URL each, the SMART treatment timeline and the OpenAPI document (issue #10).

Links use `public_base_url` (the address clients reach the service at), as cards do.
"""

from __future__ import annotations

import re
from html import escape
from pathlib import Path
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from app import __version__
from app.demo import demo_patient_ids
from app.smart import LAUNCH_PATH

router = APIRouter()

SANDBOX = "https://sandbox.cds-hooks.org/"
_DEMO_README = Path(__file__).resolve().parent.parent / "demo" / "README.md"
_ROW = re.compile(r"^\|\s*(demo-[\w-]+)\s*\|\s*([^|]+)\|")


def demo_cases() -> dict[str, str]:
    """Patient id -> its case, from the demo table in app/demo/README.md (the one description)."""
    cases: dict[str, str] = {}
    try:
        text = _DEMO_README.read_text(encoding="utf-8")
    except OSError:
        text = ""
    for line in text.splitlines():
        m = _ROW.match(line)
        if m:
            cases[m.group(1)] = m.group(2).replace("`", "").strip()
    return {pid: cases.get(pid, "") for pid in demo_patient_ids()}


def sandbox_url(base: str, patient_id: str) -> str:
    return SANDBOX + "?" + urlencode({
        "serviceDiscoveryURL": f"{base}/cds-services",
        "fhirServiceUrl": f"{base}/fhir",
        "patientId": patient_id,
    })


def timeline_url(base: str, patient_id: str) -> str:
    # fhirclient's open-server launch: the demo FHIR server needs no authorization server.
    return f"{base}{LAUNCH_PATH}?" + urlencode({"fhirServiceUrl": f"{base}/fhir", "patientId": patient_id})


_STYLE = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2733;background:#f6f8fa}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{margin:.2em 0}h2{margin-top:1.6em;border-bottom:1px solid #d5dde5;padding-bottom:.2em}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{border:1px solid #d5dde5;padding:6px 8px;text-align:left;vertical-align:top}
th{background:#eef2f6}code{background:#eef2f6;padding:1px 4px;border-radius:3px}
td:first-child code{white-space:nowrap}
.note{color:#4a5868}a{color:#0b5cad}
"""


@router.get("/", response_class=HTMLResponse, tags=["Operations"],
            summary="Landing page: services, demo patients with sandbox URLs, timeline app, OpenAPI")
async def landing(request: Request) -> HTMLResponse:
    settings = request.app.state.settings
    base = settings.public_base_url.rstrip("/")
    services = "".join(
        f"<tr><td><code>{escape(s.id)}</code></td><td><code>{escape(s.hook)}</code></td>"
        f"<td><strong>{escape(s.title or '')}</strong><br>{escape(s.description)}</td>"
        f"<td><code>POST {escape(base)}/cds-services/{escape(s.id)}</code></td></tr>"
        for s in request.app.state.services.values()
    )
    if settings.embedded_fhir:
        rows = "".join(
            f"<tr><td><code>{escape(pid)}</code></td><td>{escape(case)}</td>"
            f'<td><a href="{escape(sandbox_url(base, pid))}">CDS Hooks sandbox</a></td>'
            f'<td><a href="{escape(timeline_url(base, pid))}">Treatment timeline</a></td></tr>'
            for pid, case in demo_cases().items()
        )
        demo = (
            "<p>Synthetic patients on the embedded FHIR server "
            f"<code>{escape(base)}/fhir</code>. Each sandbox link opens the CDS Hooks sandbox with "
            "this service's discovery URL, the demo FHIR server and the patient filled in "
            "(patient-view fires on opening; the service must be reachable from your browser "
            "at the address above, see <code>BESPONSA_PUBLIC_BASE_URL</code>).</p>"
            "<table><tr><th>patient id</th><th>case</th><th>sandbox</th><th>SMART app</th></tr>"
            f"{rows}</table>"
        )
    else:
        demo = "<p>The embedded demo FHIR server is off (<code>BESPONSA_EMBEDDED_FHIR=false</code>).</p>"
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>besponsa-cds</title><style>{_STYLE}</style></head>
<body><main>
<h1>besponsa-cds <small class="note">{escape(__version__)}</small></h1>
<p>A <a href="https://cds-hooks.hl7.org/2.0/">CDS Hooks 2.0</a> service that checks
<strong>inotuzumab ozogamicin (BESPONSA)</strong> orders and the patient's next dose against the
label's regimen and dose-modification rules (EU SmPC by default, US Prescribing Information
selectable), and answers with cards: hold, omit or reduce a dose, correct the ordered dose, obtain
missing data, caution, or proceed. It is decision support: a clinician decides.</p>
<h2>Services</h2>
<p>Discovery: <a href="{escape(base)}/cds-services"><code>GET {escape(base)}/cds-services</code></a></p>
<table><tr><th>id</th><th>hook</th><th>what it does</th><th>call</th></tr>{services}</table>
<h2>Demo patients</h2>
{demo}
<h2>Treatment timeline (SMART on FHIR app)</h2>
<p>Cards link to the timeline app (SMART App Launch 2.0, EHR launch): doses, holds, interruptions,
ANC and platelets, liver tests against the label's thresholds, the next dose and today's decision,
from the same engine as the cards. Standalone launch:
<a href="{escape(base)}{LAUNCH_PATH}"><code>{escape(base)}{LAUNCH_PATH}</code></a>.</p>
<h2>API</h2>
<p><a href="{escape(base)}/openapi.json">OpenAPI document</a> (also
<a href="{escape(base)}/docs">interactive</a>), <a href="{escape(base)}/healthz">health</a>.</p>
</main></body></html>"""
    return HTMLResponse(page)
