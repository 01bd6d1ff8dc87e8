"""Generic FHIR R4 JSON -> clinical facts helpers (no drug logic).

- `codes`: code-system aliases, value-set membership by system|code, CSV value-set loader.
- `units`: UCUM conversion to canonical units (ucumvert/pint), with the non-UCUM spellings EHRs send.
- `dates`: FHIR date/dateTime/instant/Period -> timezone-aware datetime.
- `references`: subject filtering, reference keys, medication resolution (contained/bundle/resources).
- `observations`: status picking, value[x] with comparators, effective[x], referenceRange, components.
- `conditions`: clinicalStatus / verificationStatus reading.

Everything here works on raw JSON dicts (fast); strict fhir.resources validation is left to callers
for the few resources where it matters.
"""
