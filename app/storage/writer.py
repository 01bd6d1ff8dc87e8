"""The card store off the request path: a background writer that commits shown cards in batches.

A hook call hands its card rows to `CardWriter.enqueue` (a bounded in-memory queue, never a wait
for the database) and answers; one writer thread commits what is queued in batches of up to
`batch_size` responses, at most `flush_interval` after they were queued. Shutdown (`close`)
commits everything queued before the process exits.

Durability (README, Production): a card is in the database within about `flush_interval` of its
response. If the process is killed without shutdown (SIGKILL, OOM), the cards still queued are lost
(feedback naming them is then refused as an unknown card); if the database is unreachable for
longer than the queue absorbs, new cards are still answered but not recorded (counted in
`besponsa_card_store_dropped_total`, logged). Feedback is never queued: it is acknowledged only once
committed (`BufferedCardStore.record_feedback`).

`BufferedCardStore` gives the HTTP layer the CardStore interface with the writer in front: feedback
that names a card still in this process's queue flushes the queue first; feedback naming a card
that is not stored yet waits up to `card_wait` (another replica's writer may not have committed
it) before it is refused.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from app import observability
from app.storage.store import CardStore, FeedbackRejected, FeedbackResult

log = logging.getLogger(__name__)

_STOP = object()
_FLUSH = object()  # ends the batch being gathered: commit now


class CardWriter:
    """One thread committing queued card rows in batches; `enqueue` never blocks."""

    def __init__(self, store: CardStore, *, max_queue: int = 10000, batch_size: int = 200,
                 flush_interval: float = 0.05) -> None:
        self.store = store
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self._lock = threading.Lock()
        self._pending: dict[str, int] = {}  # card uuid -> responses queued with it (not committed)
        self._enqueued = 0  # responses accepted so far
        self._committed = 0  # responses committed (or given up) so far
        self._progress = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._closed = False
        self._give_up_at = float("inf")  # set by close(): a retrying commit stops then
        self._flush_requested = False  # a _FLUSH marker is in the queue
        observability.watch_store_queue(self.depth)

    # ---------------------------------------------------------------- producer side

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="card-writer", daemon=True)
            self._thread.start()

    def depth(self) -> int:
        """Responses waiting to be committed."""
        with self._lock:
            return self._enqueued - self._committed

    def enqueue(self, rows: list[dict[str, Any]], *, hook_instance: str = "") -> bool:
        """Queue the card rows of one response. False (and the rows are not recorded) when the
        writer is closed or the queue is full; never waits."""
        if not rows:
            return True
        with self._lock:
            if self._closed:
                accepted = False
            else:
                try:
                    self._queue.put_nowait(rows)
                    accepted = True
                except queue.Full:
                    accepted = False
            if accepted:
                self._enqueued += 1
                for row in rows:
                    self._pending[row["uuid"]] = self._pending.get(row["uuid"], 0) + 1
        if not accepted:
            observability.card_store_dropped(len(rows))
            log.error("card store queue full or closed: %d cards not recorded", len(rows),
                      extra={"hookInstance": hook_instance, "error": "card_store_queue_full"})
        return accepted

    def is_pending(self, uuids: Sequence[str]) -> bool:
        with self._lock:
            return any(u in self._pending for u in uuids)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued before this call is committed; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            target = self._enqueued
            if not self._flush_requested:  # one marker at a time: markers never crowd out cards
                try:
                    self._queue.put_nowait(_FLUSH)  # after every response counted in `target`
                    self._flush_requested = True
                except queue.Full:
                    pass  # a full queue fills batches at once anyway
            while self._committed < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._thread is None or not self._thread.is_alive():
                    return self._committed >= target
                self._progress.wait(remaining)
        return True

    def close(self, timeout: float = 10.0) -> bool:
        """Refuse new rows, commit what is queued (within `timeout`), stop the thread."""
        with self._lock:
            if self._closed:
                return True
            self._closed = True
            self._give_up_at = time.monotonic() + timeout
        if self._thread is None:  # never started: commit synchronously
            self._drain_inline()
            return True
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            pass  # the thread is retrying a commit; it gives up at _give_up_at
        self._thread.join(max(0.0, self._give_up_at - time.monotonic()) + 0.5)
        left = self.depth()
        if left:
            log.error("card writer stopped with %d responses not committed", left)
        return left == 0

    # ---------------------------------------------------------------- writer thread

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch, stopping = self._next_batch()
            if batch:
                self._commit(batch)

    def _next_batch(self) -> tuple[list[list[dict[str, Any]]], bool]:
        first = self._queue.get()
        while first is _FLUSH:
            self._flush_seen()
            first = self._queue.get()
        if first is _STOP:
            return self._take_rest(), True
        batch = [first]
        deadline = time.monotonic() + self.flush_interval
        while len(batch) < self.batch_size:
            remaining = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                return batch + self._take_rest(), True
            if item is _FLUSH:
                self._flush_seen()
                break
            batch.append(item)
        return batch, False

    def _flush_seen(self) -> None:
        with self._lock:
            self._flush_requested = False

    def _take_rest(self) -> list[list[dict[str, Any]]]:
        rest = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return rest
            if item is not _STOP and item is not _FLUSH:
                rest.append(item)

    def _drain_inline(self) -> None:
        batch = self._take_rest()
        if batch:
            self._commit(batch)

    def _commit(self, batch: list[list[dict[str, Any]]]) -> None:
        """Commit one batch, retrying with back-off while the database is unreachable (after
        `close`, only until its timeout)."""
        rows = [row for response in batch for row in response]
        delay = 0.1
        while True:
            started = time.perf_counter()
            try:
                self.store.insert_card_rows(rows)
                observability.card_store_batch(len(batch), len(rows), time.perf_counter() - started)
                break
            except Exception as exc:  # noqa: BLE001 - keep the rows, retry; never kill the thread
                observability.card_store_write_error()
                log.error("card store write failed; retrying", extra={"error_type": type(exc).__name__})
                if time.monotonic() + delay > self._give_up_at:
                    log.error("card writer gave up on %d cards at shutdown", len(rows))
                    break
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        with self._lock:
            for row in rows:
                n = self._pending.get(row["uuid"], 0) - 1
                if n > 0:
                    self._pending[row["uuid"]] = n
                else:
                    self._pending.pop(row["uuid"], None)
            self._committed += len(batch)
            self._progress.notify_all()


class BufferedCardStore:
    """The CardStore with a CardWriter in front for cards; everything else goes to the store."""

    def __init__(self, store: CardStore, writer: CardWriter, *, card_wait: float = 1.0) -> None:
        self.store = store
        self.writer = writer
        self.card_wait = card_wait

    def __getattr__(self, name: str) -> Any:  # report, counts, ping, purge, url, ...
        return getattr(self.store, name)

    def enqueue_cards(self, *, service_id: str, hook_instance: str, patient_id: str, cards: Sequence[Any],
                      decisions: Sequence[Any], now: datetime) -> bool:
        rows = CardStore.card_rows(service_id=service_id, hook_instance=hook_instance, patient_id=patient_id,
                                   cards=cards, decisions=decisions, now=now)
        return self.writer.enqueue(rows, hook_instance=hook_instance)

    def record_cards(self, **kwargs: Any) -> int:
        """Synchronous recording (the CardStore interface): queued, then flushed."""
        self.enqueue_cards(**kwargs)
        self.writer.flush()
        return len(kwargs.get("cards", ()))

    def record_feedback(self, service_id: str, items: Sequence[Any], now: datetime) -> FeedbackResult:
        uuids = [i.card for i in items]
        if self.writer.is_pending(uuids):  # shown by this process, not committed yet
            self.writer.flush()
        try:
            try:
                return self.store.record_feedback(service_id, items, now)
            except FeedbackRejected as exc:
                if not any(d["field"].endswith(".card") for d in exc.details) or self.card_wait <= 0:
                    raise
            # A card unknown here may be in another replica's writer queue: wait briefly for it.
            deadline = time.monotonic() + self.card_wait
            wanted = set(uuids)
            while time.monotonic() < deadline:
                time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
                if self.store.known_cards(sorted(wanted)) >= wanted:
                    break
            return self.store.record_feedback(service_id, items, now)
        except FeedbackRejected:
            observability.feedback_counted(service_id, [i.outcome for i in items], "rejected")
            raise

    def close(self) -> None:
        self.writer.close()
        self.store.close()
