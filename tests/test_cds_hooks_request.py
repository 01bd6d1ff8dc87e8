"""cds_hooks: request envelope, per-hook context, prefetch tokens, draft-order selection."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cds_hooks.orders import find_resource, narrow_to_selections
from cds_hooks.prefetch import fill_templates, token_values
from cds_hooks.request import RequestProblem, parse_request, validate_context

AUTH = {"access_token": "t0k", "token_type": "Bearer", "expires_in": 300, "scope": "patient/*.read", "subject": "cds"}


def _envelope(**extra):
    return {"hook": "order-sign", "hookInstance": str(uuid.uuid4()), "context": {}, **extra}


def _fields(exc: RequestProblem) -> dict[str, str]:
    return {d["field"]: d["message"] for d in exc.details}


def test_envelope_accepts_spec_request_with_authorization():
    req = parse_request(_envelope(fhirServer="https://ehr.example.org/fhir", fhirAuthorization=AUTH))
    assert req.access_token == "t0k"
    assert req.fhirServer == "https://ehr.example.org/fhir"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"context": {}}, "hookInstance"),
        (_envelope(hookInstance="not-a-uuid"), "hookInstance"),
        (_envelope(fhirAuthorization=AUTH), "fhirAuthorization"),  # fhirServer required with it
        (_envelope(fhirServer="ftp://ehr/fhir"), "fhirServer"),
        (_envelope(fhirServer="https://e/fhir", fhirAuthorization={**AUTH, "token_type": "MAC"}), "fhirAuthorization.token_type"),
        (_envelope(fhirServer="https://e/fhir", fhirAuthorization={**AUTH, "expires_in": -1}), "fhirAuthorization.expires_in"),
        (_envelope(context=[]), "context"),
        (_envelope(prefetch={"patient": "Patient/1"}), "prefetch.patient"),
        (_envelope(prefetch=[]), "prefetch"),
    ],
)
def test_envelope_errors_name_the_field(body, field):
    with pytest.raises(RequestProblem) as info:
        parse_request(body)
    assert field in _fields(info.value)


def test_body_that_is_not_an_object():
    with pytest.raises(RequestProblem) as info:
        parse_request([1, 2])
    assert _fields(info.value) == {"body": "expected a JSON object"}


def test_prefetch_null_is_accepted():
    req = parse_request(_envelope(prefetch={"conditions": None, "patient": {"resourceType": "Patient", "id": "p"}}))
    assert req.prefetch["conditions"] is None


@pytest.mark.parametrize(
    ("hook", "context", "field"),
    [
        ("patient-view", {"userId": "Practitioner/1"}, "context.patientId"),
        ("patient-view", {"patientId": "p1"}, "context.userId"),
        ("patient-view", {"userId": "Practitioner/1", "patientId": "p1&_count=1"}, "context.patientId"),
        ("order-sign", {"userId": "Practitioner/1", "patientId": "p1"}, "context.draftOrders"),
        ("order-sign", {"userId": "Practitioner/1", "patientId": "p1", "draftOrders": "x"}, "context.draftOrders"),
        ("order-sign", {"userId": "Practitioner/1", "patientId": "p1", "draftOrders": {"resourceType": "Patient"}}, "context.draftOrders"),
        ("order-sign", {"userId": "Practitioner/1", "patientId": "p1", "draftOrders": {"resourceType": "Bundle", "entry": {}}}, "context.draftOrders"),
        ("order-select", {"userId": "Practitioner/1", "patientId": "p1", "draftOrders": {"resourceType": "Bundle"}}, "context.selections"),
        ("order-select", {"userId": "Practitioner/1", "patientId": "p1", "draftOrders": {"resourceType": "Bundle"}, "selections": []}, "context.selections"),
        ("order-select", {"userId": "Practitioner/1", "patientId": "p1", "draftOrders": {"resourceType": "Bundle"}, "selections": ["103"]}, "context.selections[0]"),
    ],
)
def test_context_errors_name_the_field(hook, context, field):
    with pytest.raises(RequestProblem) as info:
        validate_context(hook, context)
    assert field in _fields(info.value)


def test_bundle_without_type_is_accepted():
    ctx = validate_context(
        "order-select",
        {"userId": "Practitioner/1", "patientId": "p1", "draftOrders": {"resourceType": "Bundle", "entry": []},
         "selections": ["MedicationRequest/103"]},
    )
    assert ctx.selections == ["MedicationRequest/103"] and ctx.encounterId is None


def test_unknown_hook_is_rejected():
    with pytest.raises(RequestProblem) as info:
        validate_context("encounter-discharge", {})
    assert "hook" in _fields(info.value)


def test_prefetch_tokens_from_context_and_user():
    values = token_values({"userId": "PractitionerRole/pr9", "patientId": "p1", "encounterId": "e7"})
    assert values == {
        "context.userId": "PractitionerRole/pr9",
        "context.patientId": "p1",
        "context.encounterId": "e7",
        "userPractitionerRoleId": "pr9",
    }


def test_fill_templates_reports_unfillable_tokens():
    filled = fill_templates(
        {
            "patient": "Patient/{{context.patientId}}",
            "encounter": "Encounter/{{context.encounterId}}",
            "me": "Practitioner/{{userPractitionerId}}",
        },
        {"userId": "Patient/p1", "patientId": "p1"},
    )
    assert filled.queries == {"patient": "Patient/p1"}
    assert filled.unfilled == {"encounter": ["context.encounterId"], "me": ["userPractitionerId"]}


def test_token_values_cannot_inject_query_parameters():
    filled = fill_templates({"x": "Observation?performer={{context.userId}}"}, {"userId": "Practitioner/a&code=1"})
    assert filled.queries["x"] == "Observation?performer=Practitioner/a%26code%3D1"


def test_selections_narrow_draft_orders_and_find_resource():
    bundle = {
        "resourceType": "Bundle",
        "entry": [
            {"resource": {"resourceType": "MedicationRequest", "id": "a"}},
            {"fullUrl": "urn:uuid:b", "resource": {"resourceType": "MedicationRequest"}},
            {"resource": {"resourceType": "ServiceRequest", "id": "c"}},
        ],
    }
    narrowed = narrow_to_selections(bundle, ["MedicationRequest/a", "urn:uuid:b"])
    assert [e["resource"].get("id") for e in narrowed["entry"]] == ["a", None]
    assert len(bundle["entry"]) == 3  # the original is untouched
    assert find_resource(bundle, "ServiceRequest/c") == {"resourceType": "ServiceRequest", "id": "c"}
    assert find_resource(bundle, "MedicationRequest/zzz") is None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(["{{context.patientId}}", "{{ context.encounterId }}",
                                           "{{userPractitionerId}}", "{{context.missing}}", "{{x}}",
                                           "{{", "}}", "{{context.}}"]),
                          st.text(alphabet="ab?&=/{}.", max_size=6)), max_size=6))
def test_templates_are_filled_as_by_the_token_expression(pieces):
    """The split-once filling gives what substituting each token match would (issue #11)."""
    from cds_hooks.prefetch import _TOKEN

    template = "".join(pieces)
    context = {"patientId": "p 1", "encounterId": "e/2", "userId": "Practitioner/u3"}
    values = token_values(context)
    got = fill_templates({"k": template}, context)
    missing = [t for t in _TOKEN.findall(template) if t not in values]
    if missing:
        assert got.unfilled == {"k": missing} and not got.queries
    else:
        assert got.queries == {"k": _TOKEN.sub(lambda m: values[m.group(1)], template)}


_REF_PARTS = st.sampled_from(["MedicationRequest", "ServiceRequest", "1", "a-2", "urn:uuid:x", "http://e/fhir",
                              "", "/", "MedicationRequest/1", "x/MedicationRequest"])


@settings(max_examples=300, deadline=None)
@given(entries=st.lists(st.fixed_dictionaries({}, optional={
           "fullUrl": st.lists(_REF_PARTS, max_size=4).map("/".join),
           "resource": st.fixed_dictionaries({"resourceType": _REF_PARTS, "id": _REF_PARTS})}), max_size=6),
       selections=st.lists(st.lists(_REF_PARTS, min_size=1, max_size=3).map("/".join), max_size=6))
def test_narrowing_to_selections_is_the_pairwise_match(entries, selections):
    """The set lookup keeps exactly the entries the pairwise `_matches` keeps (issue #11 bounds)."""
    from cds_hooks.orders import _matches

    got = narrow_to_selections({"resourceType": "Bundle", "entry": entries}, selections)["entry"]
    assert got == [e for e in entries if any(_matches(e, s) for s in selections)]
