"""Prefetch resolution and FHIR server queries (CDS Hooks 2.0 prefetch semantics, per key).

For each prefetch key the service asked for:
- a resource or Bundle was sent -> used (Bundle `next` pages followed on fhirServer, bounded);
- `null` was sent -> the EHR has no such data: nothing to fetch, not an error;
- the key is absent, or an OperationOutcome stands in its place (the EHR's fetch failed) ->
  fetched from `{fhirServer}/{query}` with the bearer token; with no fhirServer, a required key
  raises RequiredDataUnavailable (HTTP 412) and any other key is reported unavailable.
All fetches run in parallel within ONE total time budget, enforced while bytes are read (a
slow-drip server cannot stretch it) and with a cap on the decoded size of each answer (a gzip bomb
is cut off). A FHIR server that is slow, down, refuses or answers garbage gives a DataProblem and
a read status for the key, never an exception (issue #8, `Retrieved.status`):

- complete / empty: read whole (empty: `null` prefetch or a searchset without entries);
- partial: page limit reached, `next` on another origin, time budget spent or a page failed
  after earlier pages were read;
- unreadable: 401, 403, 5xx, time-out, malformed JSON, the wrong resource type, too large;
- not-provided: absent key and no fhirServer (a REQUIRED key absent -> 412 instead);
- unsupported: 404 on a search of the type, 501, or a 400 whose OperationOutcome says the
  type or search is not supported.

Results are returned as sent (a lenient server's superset included): local filtering and strict
parsing are the facts builder's job. Logs carry keys, resource types, counts and HTTP status only.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import orjson

from app import fhir_client, observability
from app.engine.facts import Availability, DataProblem, DomainStatus

log = logging.getLogger("besponsa_cds.retrieval")

FHIR_SERVER = "fhir-server"  # DataProblem.concept for data that could not be retrieved
DEFAULT_MAX_RESPONSE_BYTES = 20_000_000  # decoded bytes per answer (settings.fhir_max_response_bytes)


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
    # prefetch keys / resource types not read whole (legacy view of `status`)
    unavailable: set[str] = field(default_factory=set)
    status: dict[str, DomainStatus] = field(default_factory=dict)  # per prefetch key
    fetched_bytes: int = 0  # FHIR JSON read from fhirServer for this call (0: prefetch alone)


@dataclass
class _KeyResult:
    key: str
    resources: list[dict[str, Any]] = field(default_factory=list)
    problems: list[DataProblem] = field(default_factory=list)
    availability: Availability | None = None  # None until decided (then complete or empty)
    reason: str = ""
    pages_read: int = 0

    def mark(self, availability: Availability, reason: str) -> None:
        """Record that the key was not read whole (the first cause wins)."""
        if self.availability is None:
            self.availability, self.reason = availability, reason

    @property
    def failed(self) -> bool:
        return self.availability is not None and not self.availability.read_whole

    def final_status(self) -> DomainStatus:
        if self.availability is not None:
            return DomainStatus(self.availability, self.reason)
        return DomainStatus(Availability.COMPLETE if self.resources else Availability.EMPTY)


class _FetchError(Exception):
    """Why one FHIR request gave no usable answer (message is the human-readable cause; `kind`
    and `status` for metrics, traces and the log line)."""

    def __init__(self, message: str, availability: Availability = Availability.UNREADABLE, *,
                 kind: str = "other", status: int | None = None) -> None:
        super().__init__(message)
        self.availability = availability
        self.kind = kind
        self.status = status  # the HTTP status, when the server answered


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
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
) -> Retrieved:
    prefetch = prefetch or {}
    base = fhir_server.rstrip("/") if fhir_server else None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_seconds
    max_pages = max(1, max_pages)
    reader = _Reader(access_token, deadline, max(1, max_response_bytes))

    results: dict[str, _KeyResult] = {}
    jobs: dict[str, Any] = {}  # key -> coroutine filling results[key]
    to_fetch: dict[str, str] = {}
    for key in sorted(set(queries) | set(prefetch)):
        query = queries.get(key)
        if key in prefetch:
            value = prefetch[key]
            if value is None:  # the EHR has no such data (spec: not an error)
                results[key] = _KeyResult(key, availability=Availability.EMPTY)
                continue
            if _is_resource(value) and value["resourceType"] != "OperationOutcome":
                results[key] = _KeyResult(key)
                try:
                    next_url = _read_prefetch(results[key], query, value, base)
                except Exception as exc:  # noqa: BLE001 - a bug here must never become a 500
                    _unexpected(results[key], query, exc)
                    continue
                if next_url is not None:  # only paging needs the FHIR server (and a task)
                    jobs[key] = _follow_pages(key, query, next_url, base or "", reader, max_pages - 1, results[key])
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
            if key in prefetch:  # an OperationOutcome or garbage where the data should be
                why, status = "the EHR could not fetch it and there is no fhirServer to query", Availability.UNREADABLE
            else:
                why, status = "not in prefetch and no fhirServer to query", Availability.NOT_PROVIDED
            results[key] = _KeyResult(key, problems=[_problem(key, query, why)])
            results[key].mark(status, why)
        to_fetch = {}
    for key, query in to_fetch.items():
        results[key] = _KeyResult(key)
        jobs[key] = _fetch_key(results[key], query, base or "", reader, max_pages)

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
                if result.pages_read and not result.failed:
                    why = f"time budget of {timeout_seconds:g} s spent after {result.pages_read} page(s); later pages were not read"
                    result.mark(Availability.PARTIAL, why)
                else:
                    result.mark(Availability.UNREADABLE, why)
                result.problems.append(_problem(key, query, why))
            elif task.exception() is not None:  # a bug here must never become a 500
                _unexpected(result, query, task.exception())

    retrieved = _merge(list(results.values()), queries)
    retrieved.fetched_bytes = reader.bytes_read
    return retrieved


def _unexpected(result: _KeyResult, query: str | None, exc: BaseException) -> None:
    log.error("FHIR query failed unexpectedly: %s", result.key, extra={"error_type": type(exc).__name__}, exc_info=exc)
    result.problems.append(_problem(result.key, query, "could not be read"))
    result.mark(Availability.UNREADABLE, "could not be read")


def _merge(results: list[_KeyResult], queries: dict[str, str]) -> Retrieved:
    out = Retrieved()
    seen: set[tuple[str, str]] = set()
    for result in sorted(results, key=lambda r: r.key):
        out.problems.extend(result.problems)
        out.status[result.key] = result.final_status()
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


def _read_prefetch(result: _KeyResult, query: str | None, value: dict[str, Any], base: str | None) -> str | None:
    """A prefetch resource or Bundle page into `result`; the next page's URL when there is one to
    read from fhirServer (without a fhirServer the key is marked partial)."""
    key = result.key
    if value["resourceType"] != "Bundle":
        result.resources.append(value)
        return None
    _bundle_resources(key, query, value, result)
    result.pages_read = 1
    next_url = _next_link(value)
    if next_url is None:
        return None
    if base is None:
        why = "prefetch Bundle has more pages but there is no fhirServer to read them"
        result.problems.append(_problem(key, query, why))
        result.mark(Availability.PARTIAL, why)
        return None
    return next_url


def _fail(result: _KeyResult, query: str, why: str, availability: Availability = Availability.UNREADABLE) -> None:
    result.problems.append(_problem(result.key, query, why))
    result.mark(availability, why)


async def _fetch_key(result: _KeyResult, query: str, base: str, reader: _Reader, max_pages: int) -> None:
    key = result.key
    url = query if _is_absolute(query) else f"{base}/{query.lstrip('/')}"
    try:
        body = await reader.get_json(url, read=_is_read(query))
    except _FetchError as exc:
        log.warning("FHIR query failed: %s (%s)", key, resource_type_of(query), extra={"status": exc.status})
        _fail(result, query, str(exc), exc.availability)
        return
    if not _is_resource(body):
        _fail(result, query, "FHIR server answered JSON that is not a FHIR resource")
        return
    if _is_read(query):
        if body["resourceType"] != resource_type_of(query):
            _fail(result, query, f"FHIR server answered a {body['resourceType']} to a read")
        else:
            result.resources.append(body)
        return
    if body["resourceType"] != "Bundle":
        _fail(result, query, f"FHIR server answered a {body['resourceType']} instead of a search Bundle")
        return
    _bundle_resources(key, query, body, result)
    result.pages_read = 1
    next_url = _next_link(body)
    if next_url is not None:
        await _follow_pages(key, query, next_url, base, reader, max_pages - 1, result)
    log.debug("FHIR query read: %s: %d resources", key, len(result.resources))


async def _follow_pages(
    key: str,
    query: str | None,
    next_url: str | None,
    base: str,
    reader: _Reader,
    pages_left: int,
    result: _KeyResult,
) -> None:
    """Follow Bundle `next` links on the fhirServer (token only sent there), up to `pages_left`.
    Whatever stops the paging early leaves the key PARTIAL (the pages read are kept)."""
    partial = Availability.PARTIAL
    while next_url is not None:
        if pages_left <= 0:
            _fail(result, query, "more results than the page limit allows; later pages were not read", partial)
            return
        url = urljoin(base + "/", next_url)
        if not _same_origin(url, base):
            _fail(result, query, "next page is on another server; not followed", partial)
            return
        try:
            page = await reader.get_json(url)
        except _FetchError as exc:
            _fail(result, query, f"{exc} (next page)", partial)
            return
        if not _is_resource(page) or page["resourceType"] != "Bundle":
            _fail(result, query, "next page is not a Bundle", partial)
            return
        _bundle_resources(key, query, page, result)
        result.pages_read += 1
        pages_left -= 1
        next_url = _next_link(page)


_STATUS_HINTS = {
    401: " (not authorised: access token missing, expired or refused)",
    403: " (access to this data is forbidden)",
    404: " (not found)",
}
# OperationOutcome issue codes / words that say the type or search is not supported by the server.
_UNSUPPORTED_CODES = {"not-supported"}
_UNSUPPORTED_WORDS = ("unknown resource type", "not supported", "unsupported", "not implemented")
_ERROR_BODY_BYTES = 65_536  # enough of an error answer to read its OperationOutcome
_INFLATE_STEP = 1 << 20  # most bytes one decompression step may produce
ACCEPT_ENCODING = "gzip, deflate"  # what `_decoder` can inflate step by step


def _decoder(content_encoding: str) -> Any:
    """A zlib decompressor for the answer's Content-Encoding (None: not compressed)."""
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj()
    raise _FetchError(f"FHIR server answered an unsupported Content-Encoding ({encoding[:40]})", kind="malformed_body")


def _same_origin(url: str, base: str) -> bool:
    a, b = urlsplit(url), urlsplit(base)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc)


def _says_unsupported(body: bytes) -> bool:
    try:
        outcome = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    if not isinstance(outcome, dict) or outcome.get("resourceType") != "OperationOutcome":
        return False
    for issue in outcome.get("issue") or []:
        if not isinstance(issue, dict):
            continue
        if issue.get("code") in _UNSUPPORTED_CODES:
            return True
        details = issue.get("details")
        text = " ".join(str(t) for t in (issue.get("diagnostics"),
                                          details.get("text") if isinstance(details, dict) else None) if t)
        if any(w in text.lower() for w in _UNSUPPORTED_WORDS):
            return True
    return False


class _Reader:
    """GETs FHIR JSON within the call's deadline (enforced while bytes arrive) and a byte cap on
    the decoded body. The bearer token goes only where retrieval sends it (same-origin pages)."""

    def __init__(self, token: str | None, deadline: float, max_bytes: int) -> None:
        self.token, self.deadline, self.max_bytes = token, deadline, max_bytes
        self.bytes_read = 0  # decoded bytes of every answer read whole

    async def get_json(self, url: str, *, read: bool = False) -> Any:
        """One FHIR GET with its trace span and metrics (resource type, status, error kind; never the URL)."""
        with observability.fhir_query(resource_type_of(url)) as observed:
            try:
                body = await self._get_json(url, read=read)
            except _FetchError as exc:
                observed.failed(exc.kind, exc.status)
                raise
            observed.answered(200)
            return body

    async def _get_json(self, url: str, *, read: bool = False) -> Any:
        remaining = self.deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise _FetchError("FHIR server was not queried: time budget exhausted", kind="budget_exhausted")
        headers = {"Accept": fhir_client.FHIR_JSON, "Accept-Encoding": ACCEPT_ENCODING}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        client = fhir_client.client_for(url)
        try:
            async with asyncio.timeout(remaining):  # the whole exchange, not each read
                async with client.stream("GET", url, headers=headers, timeout=httpx.Timeout(remaining)) as response:
                    log.debug("FHIR answered", extra={"status": response.status_code})
                    if response.status_code != 200:
                        try:  # the OperationOutcome may say the type is not supported
                            body = await self._body(response, _ERROR_BODY_BYTES, truncate=True)
                        except _FetchError:
                            body = b""
                        raise self._status_error(response.status_code, body, read)
                    body = await self._body(response, self.max_bytes)
        except TimeoutError as exc:
            raise _FetchError("FHIR server did not answer within the time budget", kind="timeout") from exc
        except httpx.TimeoutException as exc:
            raise _FetchError("FHIR server did not answer in time", kind="timeout") from exc
        except httpx.ConnectError as exc:
            raise _FetchError("FHIR server could not be reached", kind="unreachable") from exc
        except httpx.HTTPError as exc:
            raise _FetchError(f"FHIR request failed ({type(exc).__name__})", kind="transport") from exc
        self.bytes_read += len(body)
        try:  # strict, as for request bodies: NaN, invalid UTF-8 and lone surrogates are malformed (#9)
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise _FetchError("FHIR server answered malformed JSON", kind="malformed_json") from exc

    async def _body(self, response: httpx.Response, cap: int, *, truncate: bool = False) -> bytes:
        """The decoded body, at most `cap` bytes. Decompressed here, step by bounded step, so a
        gzip bomb is cut off as it inflates and the deadline can fire between steps."""
        decoder = _decoder(response.headers.get("content-encoding", ""))
        chunks: list[bytes] = []
        size = 0
        async for raw in response.aiter_raw():
            pending = raw
            while pending:
                if decoder is None:
                    piece, pending = pending, b""
                else:
                    try:
                        piece = decoder.decompress(pending, _INFLATE_STEP)
                    except zlib.error as exc:
                        raise _FetchError("FHIR server answered a body that could not be decompressed", kind="malformed_body") from exc
                    pending = decoder.unconsumed_tail
                size += len(piece)
                if size > cap:
                    if truncate:
                        chunks.append(piece[: cap - (size - len(piece))])
                        return b"".join(chunks)
                    raise _FetchError(f"FHIR server answered more than {cap:,} bytes; not read", kind="too_large")
                chunks.append(piece)
                if pending:
                    await asyncio.sleep(0)  # a cancellation point: the time budget holds
        return b"".join(chunks)

    @staticmethod
    def _status_error(status: int, body: bytes, read: bool) -> _FetchError:
        hint = _STATUS_HINTS.get(status, "")
        if not read and (status in (404, 501) or (status == 400 and _says_unsupported(body))):
            # the server does not offer this resource type or search: a fact, not an outage
            return _FetchError(f"FHIR server answered {status}: this server does not support the query",
                               Availability.UNSUPPORTED, kind="unsupported", status=status)
        return _FetchError(f"FHIR server answered {status}{hint}", kind="http", status=status)
