"""Prefetch template filling (CDS Hooks 2.0, "Prefetch tokens").

Tokens: `{{context.<field>}}` for the context's primitive fields, and `{{userPractitionerId}}`,
`{{userPractitionerRoleId}}`, `{{userPatientId}}`, `{{userRelatedPersonId}}` derived from
`context.userId` ("Practitioner/123" fills userPractitionerId with "123"). A template with a token
that cannot be filled is reported, never sent with an empty value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import quote
from typing import Any

_TOKEN = re.compile(r"\{\{\s*([A-Za-z][A-Za-z0-9_.]*)\s*\}\}")
_USER_TOKENS = {
    "userPractitionerId": "Practitioner",
    "userPractitionerRoleId": "PractitionerRole",
    "userPatientId": "Patient",
    "userRelatedPersonId": "RelatedPerson",
}


@dataclass
class FilledTemplates:
    queries: dict[str, str] = field(default_factory=dict)  # key -> query with tokens filled
    unfilled: dict[str, list[str]] = field(default_factory=dict)  # key -> tokens with no value


def token_values(context: dict[str, Any]) -> dict[str, str]:
    """Every token this context can fill: context.* primitives and the user* ids."""
    values = {  # quoted: a value must never add query parameters
        f"context.{name}": quote(str(value), safe="/:")
        for name, value in context.items()
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value)
    }
    user = context.get("userId")
    if isinstance(user, str) and "/" in user:
        resource_type, _, user_id = user.rpartition("/")
        resource_type = resource_type.rsplit("/", 1)[-1]  # tolerate absolute URLs
        for token, expected in _USER_TOKENS.items():
            if resource_type == expected and user_id:
                values[token] = quote(user_id, safe="")
    return values


def fill_templates(templates: dict[str, str], context: dict[str, Any]) -> FilledTemplates:
    values = token_values(context)
    result = FilledTemplates()
    for key, template in templates.items():
        parts = _parts(template)
        missing = [t for t in parts[1::2] if t not in values]
        if missing:
            result.unfilled[key] = missing
        else:
            result.queries[key] = "".join(p if i % 2 == 0 else values[p] for i, p in enumerate(parts))
    return result


@lru_cache(maxsize=512)  # a service's templates are a handful of constants, filled on every call
def _parts(template: str) -> tuple[str, ...]:
    """The template split at its tokens: literal text at even positions, token names at odd ones."""
    return tuple(_TOKEN.split(template))
