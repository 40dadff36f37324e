"""Continuous batching: one model worker thread runs denoising steps for every request in flight at once.

Each loop iteration of the worker (Orca-style iteration-level scheduling, Yu et al. 2022):

1. drop running requests that were cancelled (a cancel message, the client went away: a stale request frees its
   session for its successor in this very round), then admit waiting requests that fit (batch size, canvas tokens
   per step, one request per session at a time, about ``PREFILL_TOKENS_PER_ROUND`` context tokens a round, so that
   a burst of new requests cannot starve running ones): prefill each one through its runner (``engine.runner``:
   ``Runner.start`` reuses the session's context cache where the family keeps one) and take its ``DenoiseState``;
2. drop requests cancelled meanwhile (a newer request of the same session supersedes a queued one at once);
3. pick who runs what this round (``pick_round``: bulk requests yield to interactive ones, see below), run ONE
   ``Runner.forward`` over it (packed into one batch where the family can), then the commit rule (``state.step``)
   of each request whose step's logits are complete;
4. finish requests that are done (one host sync for all of them).

Fair rounds. A step costs roughly a fixed overhead plus a share per canvas token (candidates x canvas length; on a
CPU the share dominates), so a request of 16 x 64 tokens batched with one of 2 x 16 would make every step of the
small one ~30x dearer. A request with more canvas tokens than ``bulk_tokens`` is *bulk*; the others are
*interactive* and run their whole step every round they are running.

No forward is larger than the bulk budget: a bulk request's step runs in parts of whole candidate rows, each at
most ``bulk_tokens`` canvas tokens (at least one row; ``Runner.split``, ``row_slices``), at most one part a round.
The logits of a step's parts are gathered and the state commits only once the whole step's are there, in a round
of its own (``COMMIT``: it samples every row at once with the request's one generator, so it is not sliced; for
16 x 64 on a CPU it costs about as much as the step's forward), so its sampling (seeded generator, commit rule)
is exactly what it is unsliced, on logits that equal the whole step's (``DiffillModel.denoise``'s `rows`: bit for
bit in float32 on CPU). A request that arrives meanwhile waits for one such unit only (a part, or a commit), then
is admitted and steps between them. Diffill's diffusion model slices; the AR twin (one position per candidate a
step) and the released coders run a step whole, forward and commit in one round.

A bulk unit runs beside interactive requests only while that keeps, for **each** of them, the bulk tokens run in
its rounds (a commit counts its whole step's) -- plus those of the round it waited for on arrival -- within half
the canvas tokens it stepped itself (``BULK_SHARE``, ``Running.own`` / ``Running.beside``): no interactive
request's work is ever stretched past 1.5x by bulk work, measured per request, end to end, at every step, not on
average; its time stays within 2x, with room for what canvas tokens do not capture (a forward's fixed cost,
attention over a bulk request's wider key span, a busy machine). So a short request sees one bulk unit at most
(the one it arrived during, or a part), and a long one lets parts in as it works itself.
When no interactive request runs, one bulk request's unit has each round (the one that waited longest: deficit
round robin on ``Running.credit``). Bulk requests are never starved: one that sat out ``patience`` times its next
unit's tokens of others' work runs it regardless (the one exception to the bound above, so bulk work gets at
least 1/(1 + patience) of a saturated model). Skipping rounds changes nothing in a request's result: each state
steps only on its own logits with its own generator.

The states, commit rules and forward are exactly those ``LocalEngine`` drives one request at a time, so a
request's completions equal ``LocalEngine.complete`` with the same seed, for every family. The packed forward
equals the per-request one to float rounding (tested at 1e-5 in ``tests/engine``); on CPU it is bit-identical
whenever each request has at least ~12 canvas rows (candidates x canvas length), see docs/serving.md.
The scheduler itself owns only queueing, batching, fairness and cancellation.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from engine.api import LocalEngine, pin_threads
from engine.cache import ContextCache
from engine.contract import CompletionRequest, CompletionResult, CompletionStats
from engine.runner import Prompt
from engine.serve.metrics import Metrics
from engine.serve.protocol import ProtocolError
from engine.sessions import SessionStore

log = logging.getLogger(__name__)


PREFILL_TOKENS_PER_ROUND = 2048  # context tokens new requests may prefill between two steps (at least one request)
BULK_PATIENCE = 8  # others' work (x its next unit's tokens) a bulk request sits out before it runs regardless
BULK_SHARE = 0.5  # bulk tokens an interactive request lets run beside it (its arrival's included), per token of its own
RETRY_AFTER_SECONDS = 1.0  # what a 503 from a full queue or a stopping server tells clients to wait
COMMIT = None  # the unit of a split step that commits it (``Running.parts``): a round's work, but no forward


class Cancelled(Exception):
    """The request was cancelled (by its client, or because the server is stopping) before it finished."""

    def __init__(self, message: str, status: int = 499, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status  # 499: the client cancelled (nginx's code); 503: the server is stopping
        self.retry_after = retry_after


def stopping() -> Cancelled:
    return Cancelled("the server is stopping; retry on another replica or later", 503, RETRY_AFTER_SECONDS)


@dataclass(eq=False)
class Job:
    """A submitted request: what to run, who owns it, and the future its result is delivered through."""

    prompt: Prompt
    owner: str = ""
    future: Future[CompletionResult] = field(default_factory=Future)
    submitted: float = field(default_factory=time.perf_counter)
    cancel_requested: bool = False

    @property
    def request(self) -> CompletionRequest:
        return self.prompt.request

    @property
    def rows(self) -> int:
        return self.request.num_candidates * self.prompt.canvas_length

    @property
    def cancelled(self) -> bool:
        return self.cancel_requested or self.future.cancelled()


@dataclass(eq=False)
class Running:
    """A request being denoised: its job, its runner state and its session's context cache."""

    job: Job
    state: Any  # the runner's DenoiseState
    ctx: ContextCache | None
    computed: int
    admitted: float
    prefilled: float
    batch_max: int = 1
    credit: int = 0  # bulk: canvas tokens the others ran since this one last ran a part
    own: int = 0  # interactive: canvas tokens it stepped (its work alone)
    beside: int = 0  # interactive: bulk tokens run in its rounds and as it arrived (<= share x own, but patience)
    parts: list[tuple[Any, int]] = field(default_factory=list)  # its step's units not run yet, with their tokens
    logits: list[Tensor] = field(default_factory=list)  # the logits of its step's parts run so far

    @property
    def next_tokens(self) -> int:
        """Canvas tokens the unit it runs next counts (its whole step's, ``Job.rows``, when not split)."""
        return self.parts[0][1] if self.parts else self.job.rows


def pick_round(
    running: list[Running], bulk_tokens: int, patience: int = BULK_PATIENCE, share: float = BULK_SHARE
) -> list[Running]:
    """Who runs a unit of a step this round (``Running.next_tokens`` each): every interactive request (at most
    `bulk_tokens` canvas tokens: its whole step); then the bulk requests, most credit first, one unit each while
    the round's bulk tokens fit its room: `bulk_tokens`, and every interactive request's ``share x own - beside``
    after this round (none is ever stretched past 1 + share times its work by bulk work). Regardless of that room,
    a bulk unit runs when no interactive request does (at least one a round), or when its patience ran out
    (`patience` x its tokens of others' work since it last ran), within `bulk_tokens` unless it is the round's
    only bulk unit. Updates the counters; the running order is kept (the forward's order changes no result)."""
    interactive = [r for r in running if r.job.rows <= bulk_tokens]
    for r in interactive:
        r.own += r.job.rows
    room = min([bulk_tokens, *(int(share * r.own) - r.beside for r in interactive)])
    chosen: set[Running] = set()
    bulk = 0
    for r in sorted((r for r in running if r.job.rows > bulk_tokens), key=lambda r: -r.credit):
        tokens = r.next_tokens
        due = not interactive or r.credit >= patience * tokens
        if bulk + tokens <= room or (due and (not chosen or bulk + tokens <= bulk_tokens)):
            chosen.add(r)
            bulk += tokens
    others = sum(r.job.rows for r in interactive) + bulk
    for r in running:
        if r in chosen:
            r.credit = 0
        elif r.job.rows > bulk_tokens:
            r.credit += others
    for r in interactive:
        r.beside += bulk
    return [r for r in running if r in chosen or r.job.rows <= bulk_tokens]


class Scheduler:
    def __init__(
        self,
        engine: LocalEngine,
        *,
        batching: bool = True,
        max_batch: int = 16,
        max_batch_rows: int = 4096,
        bulk_tokens: int = 256,
        max_queue: int = 256,
        cache_budget_bytes: int = 512 * 2**20,
        metrics: Metrics | None = None,
    ) -> None:
        self.runner = engine.runner
        self.name = engine.name
        self.max_batch = max_batch if batching else 1
        self.max_batch_rows = max_batch_rows
        self.bulk_tokens = bulk_tokens
        self.max_queue = max_queue
        self.metrics = metrics or Metrics()
        self.sessions = SessionStore(self.runner.new_cache, cache_budget_bytes)  # the worker thread's own
        self._threads = engine.threads
        self._pending: deque[Job] = deque()
        self._jobs: dict[tuple[str, str], Job] = {}  # (owner, request id) -> job, until its future resolves
        self._running: list[Running] = []
        self._last_round = (0.0, 0)  # when the last round ended, and the bulk tokens it ran
        self._cond = threading.Condition()
        self._stopping = False
        self._paused = False
        self._thread = threading.Thread(target=self._run, name="diffill-model", daemon=True)

    @property
    def queue_depth(self) -> int:
        return len(self._pending)

    @property
    def active(self) -> int:
        return len(self._running)

    # ---------------------------------------------------------------- called from other threads

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the worker after its current step; waiting and running requests fail with ``Cancelled`` (503)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        with self._cond:
            pending, self._pending = list(self._pending), deque()
        for job in pending:
            self._resolve(job, None, stopping())

    def submit(self, prompt: Prompt, owner: str = "") -> Job:
        """Queue a request. A queued request of the same owner and session is superseded (answered 499): its
        editor has moved on, and the newer request extends the same context cache."""
        job = Job(prompt=prompt, owner=owner)
        request = prompt.request
        key = (owner, request.request_id)
        with self._cond:
            if self._stopping:
                raise ProtocolError(503, "the server is stopping", retry_after=RETRY_AFTER_SECONDS)
            if key in self._jobs:
                raise ProtocolError(409, f"request id {request.request_id!r} is already in flight")
            stale = [j for j in self._pending if _same_session(j, job)]
            for old in stale:
                self._pending.remove(old)
            if len(self._pending) >= self.max_queue:
                self._pending.extend(stale)
                raise ProtocolError(
                    503, f"the queue is full ({self.max_queue} requests waiting)", retry_after=RETRY_AFTER_SECONDS
                )
            self._jobs[key] = job
            self._pending.append(job)
            self._cond.notify_all()
        for old in stale:
            self.metrics.observe_cancel(superseded=True)
            message = f"request {old.request.request_id} was superseded by {request.request_id} of its session"
            self._resolve(old, None, Cancelled(message))
        return job

    def cancel(self, job: Job) -> None:
        """Remove a job: at once if it is still waiting, else between two steps."""
        with self._cond:
            job.cancel_requested = True
            waiting = job in self._pending
            if waiting:
                self._pending.remove(job)
                self.metrics.observe_cancel()
            self._cond.notify_all()  # a running job is dropped by the worker before its next step
        if waiting:
            self._resolve(job, None, Cancelled(f"request {job.request.request_id} was cancelled"))

    def find(self, owner: str, request_id: str) -> Job | None:
        with self._cond:
            return self._jobs.get((owner, request_id))

    def _resolve(self, job: Job, result: CompletionResult | None, error: BaseException | None) -> None:
        """Deliver a job's outcome, unless its waiter already gave up on it (a cancelled future takes none)."""
        with self._cond:
            if self._jobs.get((job.owner, job.request.request_id)) is job:
                del self._jobs[(job.owner, job.request.request_id)]
            self._cond.notify_all()
        try:
            if error is not None:
                job.future.set_exception(error)
            else:
                job.future.set_result(result)  # type: ignore[arg-type]
        except InvalidStateError:
            pass

    def pause(self) -> None:
        """Stop admitting and stepping after the current round (requests queue up); ``resume`` goes on."""
        with self._cond:
            self._paused = True

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    def wait_until(self, predicate: Callable[[], bool], timeout: float | None = None) -> bool:
        """Block until `predicate()` holds; re-checked on every submit, cancel and scheduling round."""
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    # ---------------------------------------------------------------- the worker thread

    def _run(self) -> None:
        pin_threads(self._threads)
        while self._wait_for_work():
            self.iterate()
        for state in self._running:
            self._finish_error(state, stopping())
        self._running = []

    def _wait_for_work(self) -> bool:
        with self._cond:
            while not self._stopping and (self._paused or not (self._pending or self._running)):
                self._cond.wait()
            return not self._stopping

    def iterate(self) -> None:
        """One scheduling round: drop the cancelled, admit who fits, drop what was cancelled meanwhile, run one
        step. The worker thread loops over this; a scheduler that was never started can be driven round by round
        (tests)."""
        with torch.inference_mode():
            self._drop_cancelled()  # first: a stale request frees its session for its successor in this round
            with self._cond:
                admitted = self._take_admissible()
            for job in admitted:
                self._admit(job)
            self._drop_cancelled()
            if self._running:
                self._step_or_fail()
        with self._cond:
            self._cond.notify_all()

    def _take_admissible(self) -> list[Job]:
        """Waiting jobs that join the next step, first come first served; a job whose session is busy waits
        for it without blocking the jobs behind it. Caller holds the lock."""
        taken: list[Job] = []
        count, rows = len(self._running), sum(r.job.rows for r in self._running)
        prefill = 0  # context tokens of the jobs taken (an upper bound: a warm session computes only its new ones)
        busy = set()
        for job in list(self._pending):
            sid = job.request.session_id
            if job.cancelled:
                self._pending.remove(job)
                self.metrics.observe_cancel()
                self._resolve(job, None, Cancelled(f"request {job.request.request_id} was cancelled"))
                continue
            if self.sessions.busy(sid) or (sid is not None and sid in busy):
                continue
            if count >= self.max_batch or (count and rows + job.rows > self.max_batch_rows):
                break
            if taken and prefill + len(job.prompt.tokens) > PREFILL_TOKENS_PER_ROUND:
                break  # the rest join after the next step: a burst of new requests cannot starve the running ones
            self._pending.remove(job)
            taken.append(job)
            count, rows, prefill = count + 1, rows + job.rows, prefill + len(job.prompt.tokens)
            if sid is not None:
                busy.add(sid)
        return taken

    def _admit(self, job: Job) -> None:
        """Prefill the job's context (through its session's cache, when the family keeps one) and start its state."""
        req, t0 = job.request, time.perf_counter()
        ctx = self.sessions.acquire(req.session_id) if self.runner.session_cache else None
        try:
            state, computed = self.runner.start(job.prompt, ctx)
        except Exception as e:
            log.exception("prefill failed for request %s", req.request_id)
            if ctx is not None:
                self.sessions.release(req.session_id, ctx, keep=False)
            self._resolve(job, None, e)
            return
        self.metrics.observe_prefill(computed)
        ended, bulk = self._last_round
        waited = bulk if job.submitted < ended else 0  # the bulk work it may have waited for counts as beside it
        self._running.append(Running(job, state, ctx, computed, t0, time.perf_counter(), beside=waited))
        self._account()

    def _drop_cancelled(self) -> None:
        for state in [s for s in self._running if s.job.cancelled]:
            self._running.remove(state)
            self.metrics.observe_cancel()
            self._finish_error(state, Cancelled(f"request {state.job.request.request_id} was cancelled"), keep=True)

    def _step_or_fail(self) -> None:
        try:
            self._step()
        except Exception as e:  # e.g. out of memory: fail this batch, keep serving
            log.exception("denoising step failed; failing %d requests", len(self._running))
            running, self._running = self._running, []
            for state in running:
                self._finish_error(state, e)

    def _step(self) -> None:
        """One round: split the steps that start now into units (``_split``), pick who runs which (``pick_round``),
        one packed forward over the parts it runs, then the commit rule of each request whose step is complete: at
        once for a step run whole, in a round of its own (``COMMIT``) for a split one."""
        t0 = time.perf_counter()
        for r in self._running:
            r.parts = r.parts or self._split(r)
        stepping = pick_round(self._running, self.bulk_tokens)
        units = [r.parts.pop(0) for r in stepping]
        forwarded = [(r, part, tokens) for r, (part, tokens) in zip(stepping, units, strict=True) if part is not COMMIT]
        logits = self.runner.forward([part for _, part, _ in forwarded]) if forwarded else []
        stepped = []
        for (r, _, _), part_logits in zip(forwarded, logits, strict=True):
            r.batch_max = max(r.batch_max, len(forwarded))
            if r.parts:  # more parts, or the commit, to come
                r.logits.append(part_logits)
            else:
                r.state.step(part_logits)
                stepped.append(r)
        for r, (part, _) in zip(stepping, units, strict=True):
            if part is COMMIT:  # the whole step's logits are there: commit as unsliced
                gathered, r.logits = r.logits, []
                r.state.step(torch.cat(gathered))
                stepped.append(r)
        open_flags = torch.stack([r.state.open_flag() for r in stepped]).tolist() if stepped else []  # one sync
        if forwarded:
            self.metrics.observe_step(time.perf_counter() - t0, len(forwarded), sum(t for _, _, t in forwarded))
        bulk = sum(tokens for r, (_, tokens) in zip(stepping, units, strict=True) if r.job.rows > self.bulk_tokens)
        self._last_round = (time.perf_counter(), bulk)
        for r, is_open in zip(stepped, open_flags, strict=True):
            if r.state.advance(is_open):
                self._running.remove(r)
                self._finish(r)

    def _split(self, r: Running) -> list[tuple[Any, int]]:
        """A request's next step as units of a round each: parts of at most ``bulk_tokens`` canvas tokens, whole
        candidate rows (at least one), counted as ``Job.rows`` counts (candidates x requested canvas length), then
        its commit, which samples every row at once with the request's one generator and so is not sliced: counted
        as the whole step's tokens. A step that fits, or of a family that runs a step whole (``Runner.split``), is
        one unit: its forward and commit, counted as ``Job.rows``."""
        length = r.job.prompt.canvas_length
        rows = max(1, self.bulk_tokens // length)
        parts = self.runner.split(r.state, rows)
        if len(parts) == 1:
            return [(parts[0], r.job.rows)]
        units = [(part, len(part.canvas) * length) for part in parts]  # the rows a split step's parts cover
        return [*units, (COMMIT, r.job.rows)]

    def _finish(self, r: Running) -> None:
        req = r.job.request
        completions = self.runner.completions(r.state)
        done = time.perf_counter()
        stats = CompletionStats(
            context_tokens=len(r.job.prompt.tokens),
            computed_tokens=r.computed,
            prefill_ms=(r.prefilled - r.admitted) * 1e3,
            sample_ms=(done - r.prefilled) * 1e3,
            steps=r.state.steps_done,
            queue_ms=(r.admitted - r.job.submitted) * 1e3,
            batch_max=r.batch_max,
        )
        if r.ctx is not None:
            self.sessions.release(req.session_id, r.ctx)
        self._account()
        self._resolve(r.job, CompletionResult(completions, stats), None)

    def _finish_error(self, r: Running, error: BaseException, keep: bool = False) -> None:
        if r.ctx is not None:
            self.sessions.release(r.job.request.session_id, r.ctx, keep=keep)
        self._account()
        self._resolve(r.job, None, error)

    def _account(self) -> None:
        anonymous = sum(
            r.ctx.cache.nbytes for r in self._running if r.ctx is not None and r.job.request.session_id is None
        )
        self.sessions.account(anonymous)


def _same_session(old: Job, new: Job) -> bool:
    sid = new.request.session_id
    return sid is not None and old.owner == new.owner and old.request.session_id == sid
