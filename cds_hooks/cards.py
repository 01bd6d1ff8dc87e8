"""CDS Hooks 2.0 response models: Card, Suggestion, Action, Link, Source, override reasons.

Serialise with `model_dump(mode="json", exclude_none=True)`: the spec forbids null and empty members.
"""

from __future__ import annotations

import uuid as _uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


def new_uuid() -> str:
    return str(_uuid.uuid4())


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Coding(_Model):
    system: str
    code: str
    display: str  # mandatory for overrideReasons (CDS Hooks 2.0)


class Source(_Model):
    label: str
    url: str | None = None
    icon: str | None = None
    topic: Coding | None = None


class Link(_Model):
    label: str
    url: str
    type: Literal["absolute", "smart"] = "absolute"
    appContext: str | None = None


class Action(_Model):
    type: Literal["create", "update", "delete"]
    description: str
    resource: dict[str, Any] | None = None  # create / update: the whole resource
    resourceId: list[str] | None = None  # delete: ["MedicationRequest/123"] (2.0: array)


class Suggestion(_Model):
    label: str
    uuid: str = Field(default_factory=new_uuid)
    isRecommended: bool | None = None
    actions: list[Action] | None = None


class Card(_Model):
    summary: str = Field(max_length=140)
    indicator: Literal["info", "warning", "critical"]
    source: Source
    uuid: str = Field(default_factory=new_uuid)
    detail: str | None = None
    suggestions: list[Suggestion] | None = None
    selectionBehavior: Literal["at-most-one", "any"] | None = None
    overrideReasons: list[Coding] | None = None
    links: list[Link] | None = None
    extension: dict[str, Any] | None = None

    @field_validator("summary")
    @classmethod
    def _summary_not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("summary must not be empty")
        return v

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class CDSResponse(_Model):
    cards: list[Card] = Field(default_factory=list)
