"""Queueing and scheduling of one model's sentences: requests from every client go into one
bounded queue, and a worker thread decodes them in shared batches (no gRPC, no ONNX here).

Two policies, same worker:
- dynamic: wait up to max_queue_delay for the queue to fill a batch (sentences of similar
  length), decode it to the end, then form the next;
- inflight: between two decoder steps, queued sentences are encoded and join the running batch,
  and finished ones leave it, so a long sentence never holds the others back.
With a fixed-shape engine (the GPU form, decoding/fixed_greedy.py), plain greedy sentences are
decoded on it: whole batches under dynamic, rows joining and leaving by slot under inflight
(decoding/fixed_running.py); beam search, attention and token rules keep the step loop.

With several workers, each decodes its own batch from the shared queue (ONNX Runtime sessions
may be run from several threads at once). The queue gives requests turns (server/fair_queue.py):
a document's items alternate with other requests' instead of holding the workers in a row."""

from __future__ import annotations

import asyncio
import ctypes
import itertools
import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import numpy as np

from decoding.batching import SearchOptions, make_search
from decoding.constraints import TokenRules
from decoding.fixed_greedy import CHECK_FINISHED_EVERY, ROW_BUCKETS, FixedShapeGreedy, bucket
from decoding.fixed_running import FixedRunningBatch
from decoding.search import GreedySearch, Hypothesis, IncrementalDecoder, RunningBatch, Search
from nmt_spec import SpecialIds
from server.errors import DecodeFailed, QueueFull, Replaced, Unavailable
from server.fair_queue import FairQueue
from server.metrics import ServerMetrics

log = logging.getLogger(__name__)

# In-flight: newcomers are encoded and join once this fraction of the batch is free (or the
# batch is empty). Joining costs an encoder call, so joining one sentence at every step would
# spend more than it saves; measured on the Transformer, 2 cores, 64 rows: 1/16 decodes 20%
# more sentences per second than joining at every step, for a wait of a step or two.
ADMIT_WHEN_FREE = 1 / 16
# The dynamic policy looks this many batches deep into the queue for sentences of similar
# length to the one whose turn it is (CTranslate2 sorts a read-ahead of its input the same way).
LENGTH_GROUPING_READ_AHEAD = 4


@dataclass(frozen=True)
class BatcherConfig:
    policy: str = "dynamic"
    max_batch_size: int = 64
    max_batch_tokens: int = 6144
    max_queue_delay_seconds: float = 0.002
    max_queue_size: int = 2048
    workers: int = 1


class Answer:
    """One request's answer, awaited on an event loop: the n-best lists of all its items'
    sentences, in order. A decode worker hands the items a step finished to each loop in one
    call (one wake-up of the loop for all of them, not a future chain per request)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, parts: int, turn: Hashable | None) -> None:
        self.loop = loop
        self.turn = self if turn is None else turn  # whose turn its items take in the queue
        self.future: asyncio.Future[list] = loop.create_future()
        self.items: list[WorkItem] = []
        self._parts: list[list | None] = [None] * parts
        self._missing = parts

    def settle(self, part: int, outcome: list | BaseException) -> None:
        """On the loop: one item's n-best lists, or the error that failed it (and the request)."""
        if self.future.done():
            return
        if isinstance(outcome, BaseException):
            self.future.set_exception(outcome)
            return
        self._parts[part] = outcome
        self._missing -= 1
        if not self._missing:
            self.future.set_result([nbest for finished in self._parts for nbest in finished])


@dataclass(eq=False)
class WorkItem:
    """Part `part` of a request's sentences. Greedy requests admitted together share one search
    (one search per step costs less than one per request: measured 25% more sentences/s); beam
    requests have their own."""

    sources: list[list[int]]
    options: SearchOptions
    answer: Answer
    part: int
    enqueued_at: float = field(default_factory=time.monotonic)
    cancelled: bool = False
    search: Search | None = None
    first: int = 0  # its first sentence in the search
    fixed_answers: dict[int, Hypothesis] = field(default_factory=dict)  # decoded in fixed slots: by sentence

    @property
    def turn(self) -> Hashable:
        return self.answer.turn

    @property
    def in_search(self) -> tuple[int, int]:
        return self.first, self.first + len(self.sources)

    @property
    def sentences(self) -> int:
        return len(self.sources)

    @property
    def rows(self) -> int:
        return len(self.sources) * self.options.beam_size

    @property
    def longest_source(self) -> int:
        return max(len(s) for s in self.sources)


@dataclass(eq=False)
class Lane:
    """One worker thread's running batch and the requests in it, and its own fixed-shape engine
    (buffers are per engine: two workers never share them): whole batches under dynamic, a
    running batch of slots under inflight."""

    batch: RunningBatch
    fixed_greedy: FixedShapeGreedy | None = None
    fixed_running: FixedRunningBatch | None = None
    running: list[WorkItem] = field(default_factory=list)
    thread: threading.Thread | None = None

    @property
    def live_rows(self) -> int:
        return self.batch.size + (self.fixed_running.size if self.fixed_running is not None else 0)


class Batcher:
    def __init__(
        self,
        model: str,
        start: Callable[[list[list[int]]], IncrementalDecoder],
        special: SpecialIds,
        config: BatcherConfig,
        metrics: ServerMetrics,
        fixed_greedy: Callable[[], FixedShapeGreedy] | None = None,
    ) -> None:
        """fixed_greedy: makes a fixed-shape engine (one per worker); with it, plain greedy items
        (no token rules, no attention) are decoded on it."""
        self.model = model
        self.special = special
        self.config = config
        self.lanes = [self._lane(RunningBatch(self._timed_start(start)), fixed_greedy) for _ in range(config.workers)]
        self.queue: FairQueue[WorkItem] = FairQueue()
        self.queued_sentences = 0
        self.room_waiters: list[asyncio.Future] = []  # submit_when_room's, woken when items leave the queue
        self.condition = threading.Condition()
        self.stopping = False
        self.closing = False
        # label lookups once, not at every step
        self.queue_depth = metrics.queue_depth.labels(model=model)
        self.inflight = metrics.inflight.labels(model=model)
        self.queue_wait = metrics.queue_wait.labels(model=model)
        self.failures = metrics.decode_failures.labels(model=model)
        self.encode_seconds = metrics.compute.labels(model=model, phase="encode")
        self.encode_sentences = metrics.batch_sentences.labels(model=model, phase="encode")
        self.encode_tokens = metrics.batch_tokens.labels(model=model)
        self.step_seconds = metrics.compute.labels(model=model, phase="decode_step")
        self.step_rows = metrics.batch_sentences.labels(model=model, phase="decode_step")
        self.fixed_step_seconds = metrics.compute.labels(model=model, phase="fixed_step")
        self.fixed_step_rows = metrics.batch_sentences.labels(model=model, phase="fixed_step")
        self.fixed_batch_seconds = metrics.compute.labels(model=model, phase="decode_batch")
        self.fixed_batch_sentences = metrics.batch_sentences.labels(model=model, phase="decode_batch")
        self.generated_tokens = metrics.generated_tokens.labels(model=model)
        for number, lane in enumerate(self.lanes):
            lane.thread = threading.Thread(target=self._work, args=(lane,), name=f"batcher-{model}-{number}", daemon=True)
            lane.thread.start()

    def _lane(self, batch: RunningBatch, fixed_greedy: Callable[[], FixedShapeGreedy] | None) -> Lane:
        if fixed_greedy is None:
            return Lane(batch)
        if self.config.policy == "dynamic":
            return Lane(batch, fixed_greedy=fixed_greedy())
        return Lane(batch, fixed_running=FixedRunningBatch(fixed_greedy(), bucket(self.config.max_batch_size, ROW_BUCKETS)))

    def _timed_start(self, start: Callable[[list[list[int]]], IncrementalDecoder]) -> Callable[[list[list[int]]], IncrementalDecoder]:
        def encode(sources: list[list[int]]) -> IncrementalDecoder:
            began = time.perf_counter()
            decoder = start(sources)
            self.encode_seconds.observe(time.perf_counter() - began)
            self.encode_sentences.observe(len(sources))
            self.encode_tokens.observe(len(sources) * max(len(s) for s in sources))
            return decoder

        return encode

    # -- called from the event loop -------------------------------------------------------

    def submit(self, sources: list[list[int]], options: SearchOptions, loop: asyncio.AbstractEventLoop, turn: Hashable | None = None) -> Answer:
        """One request's sentences, queued as items of at most a batch each (so that a long
        document shares batches with other requests instead of making one outsized batch),
        all of them or none; answered on `loop` (the caller's). `turn`: what its items take turns
        as (a stream's requests share one); None: the request on its own."""
        parts = self._parts(sources, options)
        answer = Answer(loop, len(parts), turn)
        items = answer.items = [WorkItem(part, options, answer, number) for number, part in enumerate(parts)]
        sentences = len(sources)
        with self.condition:
            if self.stopping:
                raise Unavailable(f"model {self.model} is shutting down")
            if self.closing:
                raise Replaced(f"model {self.model} was replaced by a newer version")
            if not self._has_room(sentences):
                raise QueueFull(
                    f"the queue of model {self.model} is full ({self.queued_sentences} of {self.config.max_queue_size} sentences waiting); retry later with backoff"
                )
            self.queue.add(items)
            self.queued_sentences += sentences
            self.queue_depth.set(self.queued_sentences)
            self.condition.notify_all()
        return answer

    async def submit_when_room(self, sources: list[list[int]], options: SearchOptions, loop: asyncio.AbstractEventLoop, turn: Hashable | None = None) -> Answer:
        """As submit, but while the queue is full it waits for room instead of refusing: the
        requests of a stream, whose next one is not read meanwhile (HTTP/2 flow control then
        slows the sender). A request larger than the whole queue is refused by validation."""
        while True:
            try:
                return self.submit(sources, options, loop, turn)
            except QueueFull:
                room = loop.create_future()
                with self.condition:
                    full = not self._has_room(len(sources))
                    if full:
                        self.room_waiters.append(room)
                if full:
                    await room

    def _has_room(self, sentences: int) -> bool:
        return self.queued_sentences + sentences <= self.config.max_queue_size

    def _left_queue(self) -> None:
        """Under the condition, after items left the queue: its count, and the waiters woken."""
        self.queue_depth.set(self.queued_sentences)
        waiters, self.room_waiters = self.room_waiters, []
        for waiter in waiters:
            try:
                waiter.get_loop().call_soon_threadsafe(_wake, waiter)
            except RuntimeError:  # that loop is closed
                pass

    def _parts(self, sources: list[list[int]], options: SearchOptions) -> list[list[list[int]]]:
        """Consecutive runs of sentences that each fit in one batch (one sentence always does)."""
        parts: list[list[list[int]]] = []
        rows = longest = 0
        for source in sources:
            if parts and self._fits(rows, longest, options.beam_size, len(source)):
                parts[-1].append(source)
                rows, longest = rows + options.beam_size, max(longest, len(source))
            else:
                parts.append([source])
                rows, longest = options.beam_size, len(source)
        return parts

    def cancel(self, answer: Answer) -> None:
        """The client went away or its deadline passed: drop the request's items wherever they are."""
        with self.condition:
            for item in answer.items:
                item.cancelled = True
                if item in self.queue:
                    self.queue.remove(item)
                    self.queued_sentences -= item.sentences
            self._left_queue()
            self.condition.notify_all()

    def close(self) -> None:
        """Finish everything submitted so far, then end the worker (a newer version took over)."""
        with self.condition:
            self.closing = True
            self.condition.notify_all()
        self._join()

    def stop(self) -> None:
        """Fail what is still queued or running with UNAVAILABLE and end the worker."""
        with self.condition:
            self.stopping = True
            self.condition.notify_all()
        self._join()

    def _join(self) -> None:
        for lane in self.lanes:
            lane.thread.join()

    # -- the worker thread ------------------------------------------------------------------

    def _work(self, lane: Lane) -> None:
        _name_native_thread(f"nmt-decode-{self.lanes.index(lane)}")
        while True:
            newcomers = self._take(lane)
            if newcomers is None:
                break
            if newcomers:
                self._admit(lane, newcomers)
            self._drop_cancelled(lane)
            if lane.running:
                self._step(lane)
        _hand_over([(item, Unavailable(f"model {self.model} shut down before this request finished")) for item in lane.running])
        lane.running.clear()
        self._count_inflight()

    def _take(self, lane: Lane) -> list[WorkItem] | None:
        """The items that start now in this lane; None once stopping."""
        with self.condition:
            if lane.running and (self.config.policy == "dynamic" or not self.queue or lane.live_rows > (1 - ADMIT_WHEN_FREE) * self.config.max_batch_size):
                return [] if not self.stopping else None
            while not self.queue and not self.stopping and not self.closing:
                self.condition.wait()
            if self.stopping:
                _hand_over([(item, Unavailable(f"model {self.model} shut down before this request started")) for item in self.queue.clear()])
                self.queued_sentences = 0
                self._left_queue()
                return None
            if not self.queue:  # closing, and everything submitted is answered
                return [] if lane.running else None
        if self.config.policy == "dynamic":
            self._wait_to_fill()
        with self.condition:
            if not self.queue:  # another lane took it while this one waited
                return []
            taken = self._pick() if self.config.policy == "dynamic" else self._pick_in_order(lane)
            self.queue.take(taken)
            self.queued_sentences -= sum(item.sentences for item in taken)
            self._left_queue()
            return taken

    def _wait_to_fill(self) -> None:
        deadline = time.monotonic() + self.config.max_queue_delay_seconds
        with self.condition:
            while self.queue.rows < self.config.max_batch_size and not self.stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.condition.wait(remaining)

    def _fits(self, rows: int, longest: int, more_rows: int, more_longest: int) -> bool:
        """Whether a batch of rows x longest source still fits with more rows added."""
        rows, longest = rows + more_rows, max(longest, more_longest)
        return rows <= self.config.max_batch_size and rows * longest <= self.config.max_batch_tokens

    def _pick_in_order(self, lane: Lane) -> list[WorkItem]:
        """In-flight: the items next in turn that fit beside the lane's running batch. An item larger
        than a whole batch still runs, alone. Room is counted in the batch's live rows, as
        `_take` counts it: a greedy request's finished sentences have left their rows."""
        rows = lane.live_rows
        longest = max((item.longest_source for item in lane.running), default=0)
        taken: list[WorkItem] = []
        for item in self.queue:
            if not self._fits(rows, longest, item.rows, item.longest_source):
                if rows == 0:
                    taken.append(item)
                break
            taken.append(item)
            rows, longest = rows + item.rows, max(longest, item.longest_source)
        return taken

    def _pick(self) -> list[WorkItem]:
        """Dynamic: the item whose turn it is, then from the read-ahead the items of the earliest
        round (one per turn) before later ones, and within a round those of the closest lengths,
        so a batch wastes little on padding and no turn takes two places before another has one."""
        window = list(itertools.islice(self.queue.in_rounds(), LENGTH_GROUPING_READ_AHEAD * self.config.max_batch_size))
        first = window[0][1]
        taken, rows, longest = [first], first.rows, first.longest_source
        for _, item in sorted(window[1:], key=lambda entry: (entry[0], abs(entry[1].longest_source - first.longest_source))):
            if self._fits(rows, longest, item.rows, item.longest_source):
                taken.append(item)
                rows, longest = rows + item.rows, max(longest, item.longest_source)
        return taken

    def _admit(self, lane: Lane, items: list[WorkItem]) -> None:
        now = time.monotonic()
        live = [item for item in items if not item.cancelled]
        if not live:
            return
        if lane.fixed_greedy is not None and all(item.options.plain_greedy for item in live):
            for item in live:
                self.queue_wait.observe(now - item.enqueued_at)
            self._decode_fixed(lane.fixed_greedy, live)
            return
        if lane.fixed_running is not None:
            live = self._join_fixed(lane, live)
            if not live:
                return
        searches: list[Search] = []
        sources: list[list[int]] = []
        # Greedy items of the same rules share a search; those asking for attention have their own.
        greedy: dict[tuple[TokenRules, bool], list[WorkItem]] = {}
        for item in live:
            self.queue_wait.observe(now - item.enqueued_at)
            if item.options.beam_size == 1:
                greedy.setdefault((item.options.rules, item.options.with_attention), []).append(item)
            else:
                item.search = make_search(item.options, item.sources, self.special)
                searches.append(item.search)
                sources += item.sources
        for (rules, with_attention), group in greedy.items():
            max_lengths = np.concatenate([item.options.max_lengths(item.sources) for item in group])
            shared = GreedySearch(len(max_lengths), self.special, max_lengths, rules, with_attention)
            first = 0
            for item in group:
                item.search, item.first = shared, first
                first += item.sentences
                sources += item.sources
            searches.append(shared)
        try:
            lane.batch.admit(searches, sources)
        except Exception as error:  # the encoder failed: only the newcomers are affected
            log.exception("model %s: encoding %d sentences failed", self.model, sum(item.sentences for item in live))
            self.failures.inc()
            _hand_over([(item, DecodeFailed(f"model {self.model} failed to encode this request's batch: {error}")) for item in live])
            return
        lane.running += live
        self._count_inflight()

    def _decode_fixed(self, engine: FixedShapeGreedy, items: list[WorkItem]) -> None:
        """The whole batch on the fixed-shape step: encoded, decoded to the end, answered."""
        sources = [source for item in items for source in item.sources]
        max_lengths = np.concatenate([item.options.max_lengths(item.sources) for item in items])
        began = time.perf_counter()
        try:
            hypotheses = engine.translate(sources, max_lengths)
        except Exception as error:  # the runtime failed on this batch: fail it, keep serving
            log.exception("model %s: fixed-shape decoding of %d sentences failed", self.model, len(sources))
            self.failures.inc()
            _hand_over([(item, DecodeFailed(f"model {self.model} failed on the batch holding this request: {error}")) for item in items])
            return
        self.fixed_batch_seconds.observe(time.perf_counter() - began)
        self.fixed_batch_sentences.observe(len(sources))
        self.generated_tokens.inc(sum(len(h.tokens) + 1 for h in hypotheses))
        answers, first = [], 0
        for item in items:
            answers.append((item, [[h] for h in hypotheses[first : first + item.sentences]]))
            first += item.sentences
        _hand_over(answers)

    def _join_fixed(self, lane: Lane, items: list[WorkItem]) -> list[WorkItem]:
        """Plain greedy items into free slots of the lane's fixed running batch, as many as fit;
        the items left for the step loop."""
        slots = lane.fixed_running
        joining = []
        for item in items:
            if item.options.plain_greedy and slots.takes([source for taken in [*joining, item] for source in taken.sources]):
                joining.append(item)
        if not joining:
            return items
        began = time.perf_counter()
        for item in joining:
            self.queue_wait.observe(time.monotonic() - item.enqueued_at)
        try:
            slots.join(
                [source for item in joining for source in item.sources],
                np.concatenate([item.options.max_lengths(item.sources) for item in joining]),
                [(id(item), sentence) for item in joining for sentence in range(item.sentences)],
            )  # fmt: skip
        except Exception as error:  # the encoder failed: only the newcomers are affected
            log.exception("model %s: encoding %d sentences into fixed slots failed", self.model, sum(item.sentences for item in joining))
            self.failures.inc()
            _hand_over([(item, DecodeFailed(f"model {self.model} failed to encode this request's batch: {error}")) for item in joining])
            return [item for item in items if item not in joining]
        sentences = sum(item.sentences for item in joining)
        self.encode_seconds.observe(time.perf_counter() - began)
        self.encode_sentences.observe(sentences)
        self.encode_tokens.observe(sentences * slots.source_length)
        lane.running += joining
        self._count_inflight()
        return [item for item in items if item not in joining]

    def _step_fixed(self, lane: Lane) -> None:
        """A few steps of the lane's fixed running batch; the items whose sentences all finished
        are answered."""
        slots = lane.fixed_running
        rows = slots.size
        held = [item for item in lane.running if item.search is None]
        began = time.perf_counter()
        try:
            finished = slots.step()
        except Exception as error:  # the runtime failed: fail what it held, keep serving
            log.exception("model %s: fixed-shape steps on %d rows failed", self.model, rows)
            self.failures.inc()
            _hand_over([(item, DecodeFailed(f"model {self.model} failed on the batch holding this request: {error}")) for item in held])
            lane.running = [item for item in lane.running if item.search is not None]
            slots.reset()
            self._count_inflight()
            return
        seconds = (time.perf_counter() - began) / CHECK_FINISHED_EVERY
        for _ in range(CHECK_FINISHED_EVERY):
            self.fixed_step_seconds.observe(seconds)
            self.fixed_step_rows.observe(rows)
        by_id = {id(item): item for item in held}
        for (item_id, sentence), hypothesis in finished:
            if item_id in by_id:  # not cancelled meanwhile
                by_id[item_id].fixed_answers[sentence] = hypothesis
                self.generated_tokens.inc(len(hypothesis.tokens) + 1)
        answered = [item for item in held if len(item.fixed_answers) == item.sentences]
        if answered:
            for item in answered:
                lane.running.remove(item)
            _hand_over([(item, [[item.fixed_answers[sentence]] for sentence in range(item.sentences)]) for item in answered])
            self._count_inflight()

    def _count_inflight(self) -> None:
        self.inflight.set(sum(item.sentences for lane in self.lanes for item in lane.running))

    def _drop_cancelled(self, lane: Lane) -> None:
        for item in [item for item in lane.running if item.cancelled]:
            if item.search is None:  # in fixed slots
                lane.fixed_running.leave({(id(item), sentence) for sentence in range(item.sentences)})
            elif isinstance(item.search, GreedySearch):  # shared: only its sentences' rows leave
                item.search.cancel(*item.in_search)
            else:
                lane.batch.remove(item.search)
            lane.running.remove(item)
            self._count_inflight()

    def _step(self, lane: Lane) -> None:
        if lane.fixed_running is not None and lane.fixed_running.size:
            self._step_fixed(lane)
        if any(item.search is not None for item in lane.running):
            self._step_loop(lane)

    def _step_loop(self, lane: Lane) -> None:
        rows = lane.batch.size
        began = time.perf_counter()
        try:
            finished = lane.batch.step()
        except Exception as error:  # the runtime failed on this batch: fail it, keep serving
            log.exception("model %s: decoder step on %d rows failed", self.model, rows)
            self.failures.inc()
            failed = [item for item in lane.running if item.search is not None]
            _hand_over([(item, DecodeFailed(f"model {self.model} failed on the batch holding this request: {error}")) for item in failed])
            lane.running = [item for item in lane.running if item.search is None]
            lane.batch = RunningBatch(lane.batch.start)
            self._count_inflight()
            return
        self.step_seconds.observe(time.perf_counter() - began)
        self.step_rows.observe(rows)
        self.generated_tokens.inc(rows)
        done = {id(search) for search in finished}
        answered = [item for item in lane.running if id(item.search) in done or _sentences_finished(item)]
        for item in answered:
            lane.running.remove(item)
        if answered:
            _hand_over([(item, item.search.results(*item.in_search)) for item in answered])
            self._count_inflight()


def _sentences_finished(item: WorkItem) -> bool:
    """A request in a shared greedy search is answered as soon as its own sentences are done."""
    return isinstance(item.search, GreedySearch) and bool(item.search.finished[item.first : item.first + item.sentences].all())


def _name_native_thread(name: str) -> None:
    """The name `top -H` and /proc/<pid>/task/<tid>/comm show (Python threads have none of
    their own), so the CPU time of each decode worker can be told apart (python -m bench.profile)."""
    try:
        ctypes.CDLL(None).prctl(15, name.encode()[:15])  # PR_SET_NAME, Linux only
    except (OSError, AttributeError):
        pass


def _hand_over(outcomes: list[tuple[WorkItem, list | BaseException]]) -> None:
    """Finished or failed items to the loops that await them: one call per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[WorkItem, list | BaseException]]] = {}
    for item, outcome in outcomes:
        by_loop.setdefault(item.answer.loop, []).append((item, outcome))
    for loop, handed in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle, handed)
        except RuntimeError:  # that loop is closed: nobody awaits these any more
            pass


def _wake(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _settle(handed: list[tuple[WorkItem, list | BaseException]]) -> None:
    for item, outcome in handed:
        item.answer.settle(item.part, outcome)

