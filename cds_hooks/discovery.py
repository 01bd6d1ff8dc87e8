"""CDS Hooks 2.0 discovery: service definitions and the `GET /cds-services` document."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ServiceDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hook: str = Field(description="The hook this service is invoked on, e.g. 'order-sign'.")
    id: str = Field(description="Unique id: the service is called at {base}/cds-services/{id}.")
    title: str | None = Field(None, description="Human-friendly name of the service.")
    description: str = Field(description="What the service does.")
    prefetch: dict[str, str] | None = Field(
        None, description="Prefetch templates: key -> FHIR query with {{context...}} tokens."
    )
    usageRequirements: str | None = Field(
        None, description="What the EHR must do or know before using the service."
    )
    extension: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class DiscoveryResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")

    services: list[ServiceDefinition]

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)
