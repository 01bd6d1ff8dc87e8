"""Per-service hook-call operations in the OpenAPI document.

The route is one (`POST /cds-services/{service_id}`), but each service answers one hook: the
document adds `POST /cds-services/<id>` per service with that hook's request schema and examples,
so a client generated from it cannot send a `patient-view` request to the order-sign service.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from cds_hooks.discovery import ServiceDefinition
from cds_hooks.request import HOOK_REQUEST_MODELS

GENERIC = "/cds-services/{service_id}"


def add_service_operations(doc: dict[str, Any], services: Iterable[ServiceDefinition]) -> None:
    generic = doc.get("paths", {}).get(GENERIC, {}).get("post")
    if generic is None:
        return
    for service in services:
        model = HOOK_REQUEST_MODELS.get(service.hook)
        if model is None:
            continue
        operation = copy.deepcopy(generic)
        operation["operationId"] = f"call_{service.id.replace('-', '_')}"
        operation["summary"] = f"Call {service.id} ({service.hook} hook)"
        operation["parameters"] = [p for p in operation.get("parameters", []) if p.get("name") != "service_id"]
        operation["responses"].pop("404", None)
        body = operation["requestBody"]["content"]["application/json"]
        body["schema"] = {"$ref": f"#/components/schemas/{model.__name__}"}
        body["examples"] = {k: v for k, v in body.get("examples", {}).items() if k == service.hook}
        doc["paths"][f"/cds-services/{service.id}"] = {"post": operation}
