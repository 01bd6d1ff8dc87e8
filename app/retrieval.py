"""Prefetch resolution and FHIR server queries (CDS Hooks 2.0 prefetch semantics, per key).

For each prefetch key the service asked for:
- a resource or Bundle was sent -> used (Bundle `next` pages followed on fhirServer, bounded);
- `null` was sent -> the EHR has no such data: nothing to fetch, not an error;
- the key is absent, or an OperationOutcome stands in its place (the EHR's fetch failed) ->
  fetched from `{fhirServer}/{query}` with the bearer token; with no fhirServer, a required key
  raises RequiredDataUnavailable (HTTP 412) and any other key is reported unavailable.
All fetches run in parallel within ONE total time budget. A FHIR server that is slow, down, refuses
(401/403/404/5xx) or answers garbage gives a DataProblem and an `unavailable` key, never an
exception: the rules then say which data could not be read (obtain-data).

Results are returned as sent (a lenient server's superset included): local filtering and strict
parsing are the facts builder's job. Logs carry keys, resource types, counts and HTTP status only.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import orjson

from app import fhir_client
from app.engine.facts import DataProblem

log = logging.getLogger("besponsa_cds.retrieval")

FHIR_SERVER = "fhir-server"  # DataProblem.concept for data that could not be retrieved


class RequiredDataUnavailable(Exception):
    """Required prefetch data is absent and there is no fhirServer to fetch it from (-> HTTP 412)."""

    def __init__(self, keys: list[str], reason: str) -> None:
        super().__init__(reason)
        self.keys = keys
        self.reason = reason


@dataclass
class Retrieved:
    resources: list[dict[str, Any]] = field(default_factory=list)  # raw FHIR JSON, deduplicated
    problems: list[DataProblem] = field(default_factory=list)
    unavailable: set[str] = field(default_factory=set)  # prefetch keys / resource types not read


@dataclass
class _KeyResult:
    key: str
    resources: list[dict[str, Any]] = field(default_factory=list)
    problems: list[DataProblem] = field(default_factory=list)
    failed: bool = False  # the key's data could not be read (completely)


class _FetchError(Exception):
    """Why one FHIR request gave no usable answer (message is the human-readable cause)."""


def resource_type_of(query: str) -> str:
    """"Observation?patient=1" -> "Observation"; "Patient/1" -> "Patient"."""
    absolute = _is_absolute(query)
    path = urlsplit(query).path if absolute else query.split("?", 1)[0]
    parts = [p for p in path.split("/") if p]
    if absolute:  # absolute URL: the type is the segment before an id or the last one
        parts = parts[-2:] if len(parts) >= 2 and parts[-2][:1].isupper() else parts[-1:]
    return parts[0] if parts else query


def _is_absolute(query: str) -> bool:
    return query.startswith(("http://", "https://"))


def _is_read(query: str) -> bool:
    path = query.split("?", 1)[0].strip("/")
    return "?" not in query and len(path.split("/")) == 2 and not path.endswith("_search")


def _label(key: str, query: str | None) -> str:
    rtype = resource_type_of(query) if query else key
    return f"{rtype} ({key})" if rtype != key else key


def _problem(key: str, query: str | None, why: str) -> DataProblem:
    return DataProblem(concept=FHIR_SERVER, reason=f"{_label(key, query)}: {why}")


async def collect(
    prefetch: dict[str, Any] | None,
    queries: dict[str, str],
    *,
    fhir_server: str | None,
    access_token: str | None,
    required: frozenset[str],
    timeout_seconds: float,
    max_pages: int,
) -> Retrieved:
    prefetch = prefetch or {}
    base = fhir_server.rstrip("/") if fhir_server else None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_seconds
    max_pages = max(1, max_pages)

    results: dict[str, _KeyResult] = {}
    jobs: dict[str, Any] = {}  # key -> coroutine filling results[key]
    to_fetch: dict[str, str] = {}
    for key in sorted(set(queries) | set(prefetch)):
        query = queries.get(key)
        if key in prefetch:
            value = prefetch[key]
            if value is None:  # the EHR has no such data (spec: not an error)
                continue
            if _is_resource(value) and value["resourceType"] != "OperationOutcome":
                results[key] = _KeyResult(key)
                jobs[key] = _from_prefetch(results[key], query, value, base, access_token, deadline, max_pages)
                continue
            if not _is_resource(value):
                log.warning("prefetch value is not a FHIR resource: %s", key)
            elif query is not None:
                log.info("prefetch %s is an OperationOutcome: fetching from fhirServer", key)
        if query is not None:
            to_fetch[key] = query

    if to_fetch and base is None:
        missing_required = sorted(k for k in to_fetch if k in required)
        if missing_required:
            for job in jobs.values():
                job.close()
            raise RequiredDataUnavailable(
                missing_required,
                "required prefetch data ("
                + ", ".join(missing_required)
                + ") was not sent (or the EHR's fetch failed) and the request has no fhirServer to query",
            )
        for key, query in to_fetch.items():
            why = "not in prefetch and no fhirServer to query"
            results[key] = _KeyResult(key, problems=[_problem(key, query, why)], failed=True)
        to_fetch = {}
    for key, query in to_fetch.items():
        results[key] = _KeyResult(key)
        jobs[key] = _fetch_key(results[key], query, base or "", access_token, deadline, max_pages)

    if jobs:
        tasks = {key: asyncio.create_task(job) for key, job in jobs.items()}
        done, pending = await asyncio.wait(tasks.values(), timeout=max(0.0, deadline - loop.time()))
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        for key, task in tasks.items():
            result, query = results[key], queries.get(key)
            if task not in done:  # partial pages already read are kept, but the key is incomplete
                why = f"FHIR server did not answer within the {timeout_seconds:g} s time budget"
                log.warning("FHIR query timed out: %s", key)
                result.problems.append(_problem(key, query, why))
                result.failed = True
            elif task.exception() is not None:  # a bug here must never become a 500
                exc = task.exception()
                log.error("FHIR query failed unexpectedly: %s", key, extra={"error_type": type(exc).__name__}, exc_info=exc)
                result.problems.append(_problem(key, query, "could not be read"))
                result.failed = True

    return _merge(list(results.values()), queries)


def _merge(results: list[_KeyResult], queries: dict[str, str]) -> Retrieved:
    out = Retrieved()
    seen: set[tuple[str, str]] = set()
    for result in sorted(results, key=lambda r: r.key):
        out.problems.extend(result.problems)
        if result.failed:
            out.unavailable.add(result.key)
            if result.key in queries:
                out.unavailable.add(resource_type_of(queries[result.key]))
        for resource in result.resources:
            rid = resource.get("id")
            if isinstance(rid, str) and rid:
                ident = (resource["resourceType"], rid)
                if ident in seen:
                    continue
                seen.add(ident)
            out.resources.append(resource)
    return out


def _is_resource(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("resourceType"), str) and bool(value["resourceType"])


def _bundle_resources(key: str, query: str | None, bundle: dict[str, Any], result: _KeyResult) -> None:
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        result.problems.append(_problem(key, query, "Bundle.entry is not a list"))
        return
    skipped = 0
    for entry in entries:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not _is_resource(resource):
            skipped += 1
            continue
        if resource["resourceType"] == "OperationOutcome":  # search warnings (search.mode=outcome)
            continue
        result.resources.append(resource)  # invalid content is the builder's to report
    if skipped:
        result.problems.append(_problem(key, query, f"{skipped} Bundle entr{'y' if skipped == 1 else 'ies'} without a resource skipped"))


def _next_link(bundle: dict[str, Any]) -> str | None:
    for link in bundle.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return link["url"]
    return None


async def _from_prefetch(
    result: _KeyResult,
    query: str | None,
    value: dict[str, Any],
    base: str | None,
    token: str | None,
    deadline: float,
    max_pages: int,
) -> None:
    key = result.key
    if value["resourceType"] != "Bundle":
        result.resources.append(value)
        return
    _bundle_resources(key, query, value, result)
    next_url = _next_link(value)
    if next_url is None:
        return
    if base is None:
        result.problems.append(
            _problem(key, query, "prefetch Bundle has more pages but there is no fhirServer to read them")
        )
        return
    await _follow_pages(key, query, next_url, base, token, deadline, max_pages - 1, result)


async def _fetch_key(
    result: _KeyResult, query: str, base: str, token: str | None, deadline: float, max_pages: int
) -> None:
    key = result.key
    url = query if _is_absolute(query) else f"{base}/{query.lstrip('/')}"
    try:
        body = await _get_json(url, token, deadline)
    except _FetchError as exc:
        log.warning("FHIR query failed: %s (%s)", key, resource_type_of(query))
        result.problems.append(_problem(key, query, str(exc)))
        result.failed = True
        return
    if not _is_resource(body):
        result.problems.append(_problem(key, query, "FHIR server answered JSON that is not a FHIR resource"))
        result.failed = True
        return
    if _is_read(query):
        if body["resourceType"] != resource_type_of(query):
            result.problems.append(_problem(key, query, f"FHIR server answered a {body['resourceType']} to a read"))
            result.failed = True
        else:
            result.resources.append(body)
        return
    if body["resourceType"] != "Bundle":
        result.problems.append(
            _problem(key, query, f"FHIR server answered a {body['resourceType']} instead of a search Bundle")
        )
        result.failed = True
        return
    _bundle_resources(key, query, body, result)
    next_url = _next_link(body)
    if next_url is not None:
        await _follow_pages(key, query, next_url, base, token, deadline, max_pages - 1, result)
    log.info("FHIR query read: %s: %d resources", key, len(result.resources))
    return


async def _follow_pages(
    key: str,
    query: str | None,
    next_url: str | None,
    base: str,
    token: str | None,
    deadline: float,
    pages_left: int,
    result: _KeyResult,
) -> None:
    """Follow Bundle `next` links on the fhirServer (token only sent there), up to `pages_left`."""
    while next_url is not None:
        if pages_left <= 0:
            result.problems.append(
                _problem(key, query, "more results than the page limit allows; later pages were not read")
            )
            return
        url = urljoin(base + "/", next_url)
        if not _same_origin(url, base):
            result.problems.append(_problem(key, query, "next page is on another server; not followed"))
            return
        try:
            page = await _get_json(url, token, deadline)
        except _FetchError as exc:
            result.problems.append(_problem(key, query, f"{exc} (next page)"))
            result.failed = True
            return
        if not _is_resource(page) or page["resourceType"] != "Bundle":
            result.problems.append(_problem(key, query, "next page is not a Bundle"))
            result.failed = True
            return
        _bundle_resources(key, query, page, result)
        pages_left -= 1
        next_url = _next_link(page)


_STATUS_HINTS = {
    401: " (not authorised: access token missing, expired or refused)",
    403: " (access to this data is forbidden)",
    404: " (not found)",
}


def _same_origin(url: str, base: str) -> bool:
    a, b = urlsplit(url), urlsplit(base)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc)


async def _get_json(url: str, token: str | None, deadline: float) -> Any:
    remaining = deadline - asyncio.get_running_loop().time()
    if remaining <= 0:
        raise _FetchError("FHIR server was not queried: time budget exhausted")
    headers = {"Accept": fhir_client.FHIR_JSON}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    client = fhir_client.client_for(url)
    try:
        response = await client.get(url, headers=headers, timeout=httpx.Timeout(remaining))
    except httpx.TimeoutException as exc:
        raise _FetchError("FHIR server did not answer in time") from exc
    except httpx.ConnectError as exc:
        raise _FetchError("FHIR server could not be reached") from exc
    except httpx.HTTPError as exc:
        raise _FetchError(f"FHIR request failed ({type(exc).__name__})") from exc
    log.debug("FHIR answered", extra={"status": response.status_code})
    if response.status_code != 200:
        hint = _STATUS_HINTS.get(response.status_code, "")
        raise _FetchError(f"FHIR server answered {response.status_code}{hint}")
    try:  # strict, as for request bodies: NaN, invalid UTF-8 and lone surrogates are malformed (#9)
        return orjson.loads(response.content)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _FetchError("FHIR server answered malformed JSON") from exc
