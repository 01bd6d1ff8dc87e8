"""CDS Hooks 2.0 request models and per-hook context validation (hook library v1.0.1).

Validation is strict where the spec is (hookInstance is a UUID, fhirServer is required with
fhirAuthorization, token_type is "Bearer") and tolerant where real clients differ from it
(draftOrders Bundles without `type`, extra members). Errors become `{"field", "message"}` items.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic.json_schema import models_json_schema

# FHIR `id` datatype: also keeps prefetch queries free of injected parameters.
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def _fhir_id(value: str) -> str:
    if not _FHIR_ID.fullmatch(value):
        raise ValueError("must be a FHIR id (1-64 characters: letters, digits, '-', '.')")
    return value


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an absolute http(s) URL")
    return value


def _reference(value: str) -> str:
    if "/" not in value.strip("/"):
        raise ValueError("must be a relative reference such as 'MedicationRequest/123'")
    return value


# The validators' rules, stated in the JSON schema too (OpenAPI document) for generated clients.
FhirId = Annotated[
    str, AfterValidator(_fhir_id), WithJsonSchema({"type": "string", "pattern": f"^{_FHIR_ID.pattern}$"})
]
HttpUrl = Annotated[
    str, AfterValidator(_http_url), WithJsonSchema({"type": "string", "format": "uri", "pattern": "^https?://[^/?#@]+"})
]
NonEmpty = Annotated[str, Field(min_length=1)]
Reference = Annotated[
    str, AfterValidator(_reference), WithJsonSchema({"type": "string", "pattern": "^/*[^/]+/+[^/]"})
]


class _Open(BaseModel):
    """Members beyond the spec (e.g. `extension`) are tolerated, as the spec allows."""

    model_config = ConfigDict(extra="allow")


class FhirAuthorization(_Open):
    access_token: NonEmpty
    token_type: Literal["Bearer"]
    expires_in: int = Field(ge=0, le=2**31 - 1)  # seconds; larger cannot be a real lifetime
    scope: NonEmpty
    subject: NonEmpty
    patient: FhirId | None = None


class CDSRequest(_Open):
    """A hook call. `context` is checked per hook by `validate_context`."""

    # fhirAuthorization only with fhirServer (the validator below), stated for the document too.
    model_config = ConfigDict(json_schema_extra={"dependentSchemas": {"fhirAuthorization": {
        "required": ["fhirServer"], "properties": {"fhirServer": {"type": "string"}}}}})

    hook: NonEmpty
    hookInstance: UUID
    fhirServer: HttpUrl | None = None
    fhirAuthorization: FhirAuthorization | None = None
    context: dict[str, Any]
    prefetch: dict[str, dict[str, Any] | None] | None = None

    @field_validator("fhirAuthorization")
    @classmethod
    def _server_with_authorization(
        cls, value: FhirAuthorization | None, info: ValidationInfo
    ) -> FhirAuthorization | None:
        if value is not None and not info.data.get("fhirServer"):
            raise ValueError("fhirServer is required when fhirAuthorization is sent")
        return value

    @property
    def access_token(self) -> str | None:
        return self.fhirAuthorization.access_token if self.fhirAuthorization else None


class PatientViewContext(_Open):
    userId: NonEmpty
    patientId: FhirId
    encounterId: FhirId | None = None


def _bundle(value: dict[str, Any]) -> dict[str, Any]:
    # Bundle.type is not required: the hook library's own examples and the sandbox omit it.
    if value.get("resourceType") != "Bundle":
        raise ValueError("must be a FHIR Bundle (resourceType 'Bundle')")
    entries = value.get("entry", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ValueError("Bundle.entry must be a list of objects")
    return value


DraftBundle = Annotated[
    dict[str, Any],
    AfterValidator(_bundle),
    WithJsonSchema({
        "type": "object",
        "description": "A FHIR Bundle of the draft orders (Bundle.type may be absent).",
        "required": ["resourceType"],
        "properties": {
            "resourceType": {"const": "Bundle"},
            "entry": {"type": "array", "items": {"type": "object"}},
        },
        "additionalProperties": True,
    }),
]


class OrderSignContext(PatientViewContext):
    draftOrders: DraftBundle


class OrderSelectContext(OrderSignContext):
    selections: list[Reference] = Field(min_length=1)


class PatientViewRequest(CDSRequest):
    """A `patient-view` call: the context names the patient (and encounter)."""

    hook: Literal["patient-view"]
    context: PatientViewContext  # type: ignore[assignment]


class OrderSignRequest(CDSRequest):
    """An `order-sign` call: the context carries the `draftOrders` Bundle."""

    hook: Literal["order-sign"]
    context: OrderSignContext  # type: ignore[assignment]


class OrderSelectRequest(CDSRequest):
    """An `order-select` call: the context carries `draftOrders` and the `selections` among them."""

    hook: Literal["order-select"]
    context: OrderSelectContext  # type: ignore[assignment]


# Documentation of the per-hook rules (validation itself is parse_request + validate_context).
HOOK_REQUEST_MODELS: dict[str, type[CDSRequest]] = {
    "patient-view": PatientViewRequest,
    "order-select": OrderSelectRequest,
    "order-sign": OrderSignRequest,
}


def request_json_schemas(ref_template: str) -> dict[str, dict[str, Any]]:
    """JSON schemas of a hook call: `CDSRequest` is one of the per-hook requests, chosen by `hook`."""
    _, defs = models_json_schema(
        [(m, "validation") for m in HOOK_REQUEST_MODELS.values()], ref_template=ref_template
    )
    schemas: dict[str, dict[str, Any]] = defs["$defs"]
    refs = {hook: ref_template.format(model=model.__name__) for hook, model in HOOK_REQUEST_MODELS.items()}
    schemas["CDSRequest"] = {
        "title": "CDSRequest",
        "description": "A hook call; `hook` selects the context it must carry (CDS Hooks library v1.0.1).",
        "oneOf": [{"$ref": ref} for ref in refs.values()],
        "discriminator": {"propertyName": "hook", "mapping": refs},
    }
    return schemas


CONTEXT_MODELS: dict[str, type[PatientViewContext]] = {
    "patient-view": PatientViewContext,
    "order-select": OrderSelectContext,
    "order-sign": OrderSignContext,
}


class RequestProblem(Exception):
    """A request that breaks the spec: carries `{"field", "message"}` items for the 400 body."""

    def __init__(self, message: str, details: list[dict[str, str]]) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


def field_path(loc: tuple[Any, ...] | list[Any], prefix: str = "") -> str:
    """A pydantic error location as a JSON path: ("context", "selections", 0) -> "context.selections[0]"."""
    field = prefix
    for part in loc:
        field += f"[{part}]" if isinstance(part, int) else (f".{part}" if field else str(part))
    return field or "body"


def error_details(exc: ValidationError, prefix: str = "") -> list[dict[str, str]]:
    """Pydantic errors -> [{"field": "context.patientId", "message": "Field required"}, ...]."""
    return [
        {"field": field_path(err["loc"], prefix), "message": err["msg"].removeprefix("Value error, ")}
        for err in exc.errors(include_url=False, include_input=False)
    ]


def parse_request(body: Any) -> CDSRequest:
    """Validate the request envelope; raises RequestProblem."""
    if not isinstance(body, dict):
        raise RequestProblem(
            "The request body must be a JSON object.",
            [{"field": "body", "message": "expected a JSON object"}],
        )
    try:
        return CDSRequest.model_validate(body)
    except ValidationError as exc:
        raise RequestProblem("The request does not follow CDS Hooks 2.0.", error_details(exc)) from exc


def validate_context(hook: str, context: dict[str, Any]) -> PatientViewContext:
    """Validate `context` against its hook's definition; raises RequestProblem."""
    model = CONTEXT_MODELS.get(hook)
    if model is None:
        raise RequestProblem(
            f"Unsupported hook '{hook}'.",
            [{"field": "hook", "message": f"expected one of {sorted(CONTEXT_MODELS)}"}],
        )
    try:
        return model.model_validate(context)
    except ValidationError as exc:
        raise RequestProblem(
            f"The context does not follow the {hook} hook.", error_details(exc, "context")
        ) from exc
