"""The three BESPONSA services advertised at GET /cds-services (ids unique across hooks)."""

from __future__ import annotations

from app.prefetch_queries import PREFETCH_TEMPLATES
from cds_hooks.discovery import DiscoveryResponse, ServiceDefinition

_USAGE = (
    "Adults with relapsed or refractory CD22-positive B-cell precursor ALL treated with inotuzumab "
    "ozogamicin (BESPONSA). The EHR should fill the prefetch templates; when it cannot, the service "
    "queries fhirServer (FHIR R4) with fhirAuthorization, and answers 412 if it can do neither."
)

SERVICES: dict[str, ServiceDefinition] = {
    s.id: s
    for s in (
        ServiceDefinition(
            hook="order-sign",
            id="besponsa-order-sign",
            title="BESPONSA dose check at signing",
            description=(
                "Checks a draft inotuzumab ozogamicin (BESPONSA) order against the label's regimen "
                "and dose-modification rules (SmPC 4.2) and returns hold, dose-correction, "
                "data-needed or proceed cards. Orders for other drugs get no cards."
            ),
            prefetch=dict(PREFETCH_TEMPLATES),
            usageRequirements=_USAGE,
        ),
        ServiceDefinition(
            hook="order-select",
            id="besponsa-order-select",
            title="BESPONSA dose check while ordering",
            description=(
                "Checks the selected draft inotuzumab ozogamicin (BESPONSA) orders as they are "
                "written: regimen, dose for the cycle, hepatic and haematological holds."
            ),
            prefetch=dict(PREFETCH_TEMPLATES),
            usageRequirements=_USAGE,
        ),
        ServiceDefinition(
            hook="patient-view",
            id="besponsa-patient-view",
            title="BESPONSA treatment status",
            description=(
                "For a patient on inotuzumab ozogamicin (BESPONSA), shows what the next dose "
                "requires: holds, reductions and missing results. Other patients get no cards."
            ),
            prefetch=dict(PREFETCH_TEMPLATES),
            usageRequirements=_USAGE,
        ),
    )
}


def discovery_document() -> DiscoveryResponse:
    return DiscoveryResponse(services=list(SERVICES.values()))
