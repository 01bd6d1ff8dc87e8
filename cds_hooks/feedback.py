"""CDS Hooks 2.0 feedback request models (`POST {base}/cds-services/{id}/feedback`).

    {"feedback": [{"card": "<card uuid>", "outcome": "accepted" | "overridden",
                   "acceptedSuggestions": [{"id": "<suggestion uuid>"}],
                   "overrideReason": {"reason": Coding, "userComment": "..."},
                   "outcomeTimestamp": "2026-11-23T10:00:00Z"}]}

Rules enforced here (spec 2.0 "Feedback"): `acceptedSuggestions` is required (non-empty) for
`accepted` and not allowed for `overridden`; `overrideReason` only with `overridden` (it may be
absent: an override without a reason is allowed), and its `reason`, when given, needs `system` and
`code`. A timestamp without a zone is read as UTC. Unknown members are ignored (tolerant reader).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cds_hooks.request import error_details  # noqa: F401  (re-exported: one error shape for every route)


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, str_strip_whitespace=True)


class FeedbackCoding(_Model):
    system: str = Field(min_length=1)
    code: str = Field(min_length=1)
    display: str | None = None


class OverrideReason(_Model):
    reason: FeedbackCoding | None = None
    userComment: str | None = Field(None, max_length=10_000)


class AcceptedSuggestion(_Model):
    id: str = Field(min_length=1)


# `_outcome_members` below, as JSON Schema for the OpenAPI document: one branch per outcome.
_OUTCOME_RULES: dict[str, Any] = {
    "oneOf": [
        {
            "title": "accepted",
            "properties": {
                "outcome": {"const": "accepted"},
                "acceptedSuggestions": {"type": "array", "minItems": 1},
                "overrideReason": {"type": "null"},
            },
            "required": ["outcome", "acceptedSuggestions"],
        },
        {
            "title": "overridden",
            "properties": {
                "outcome": {"const": "overridden"},
                "acceptedSuggestions": {"anyOf": [{"type": "array", "maxItems": 0}, {"type": "null"}]},
            },
            "required": ["outcome"],
        },
    ]
}


class FeedbackItem(_Model):
    model_config = ConfigDict(json_schema_extra=_OUTCOME_RULES)

    card: str = Field(min_length=1)
    outcome: Literal["accepted", "overridden"]
    acceptedSuggestions: list[AcceptedSuggestion] | None = None
    overrideReason: OverrideReason | None = None
    outcomeTimestamp: datetime
    extension: dict[str, Any] | None = None

    @field_validator("outcomeTimestamp", mode="before")
    @classmethod
    def _iso8601(cls, v: Any) -> datetime:
        if not isinstance(v, str) or "T" not in v:
            raise ValueError("must be an ISO 8601 date-time string, e.g. 2026-11-23T10:00:00Z")
        try:
            parsed = datetime.fromisoformat(v.strip())
        except ValueError:
            raise ValueError("must be an ISO 8601 date-time string, e.g. 2026-11-23T10:00:00Z") from None
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)

    @model_validator(mode="after")
    def _outcome_members(self) -> FeedbackItem:
        if self.outcome == "accepted":
            if not self.acceptedSuggestions:
                raise ValueError("acceptedSuggestions is required (non-empty) when outcome is 'accepted'")
            if self.overrideReason is not None:
                raise ValueError("overrideReason is only allowed when outcome is 'overridden'")
        elif self.acceptedSuggestions:
            raise ValueError("acceptedSuggestions is only allowed when outcome is 'accepted'")
        return self

    @property
    def accepted_ids(self) -> list[str]:
        return sorted({s.id for s in self.acceptedSuggestions or []})

    @property
    def user_comment(self) -> str | None:
        return (self.overrideReason.userComment or None) if self.overrideReason else None

    @property
    def reason(self) -> FeedbackCoding | None:
        return self.overrideReason.reason if self.overrideReason else None


class FeedbackRequest(_Model):
    feedback: list[FeedbackItem] = Field(min_length=1, max_length=1000)
