"""Continuous batching: one model worker thread runs denoising steps for every request in flight at once.

Each loop iteration of the worker (Orca-style iteration-level scheduling, Yu et al. 2022):

1. admit waiting requests that fit (batch size, canvas tokens per step, one request per session at a time):
   prefill each one's context through its session's ``ContextCache.update`` and set up its canvas state
   (canvas, mask, log-probs, row temperatures and a generator seeded exactly as ``engine.sample.fill`` seeds it);
2. drop requests that were cancelled (a cancel message, or the client went away);
3. run ONE ``model.denoise_packed`` forward over every running request's canvas, then apply ``predict`` +
   ``denoise_step`` per request with its own generator and step budget;
4. finish requests whose canvas is complete or whose step budget is spent (one host sync for all of them).

Because a request sees the same sequence of ``predict``/``denoise_step`` calls, logits and random draws as in
``fill``, its completions equal ``LocalEngine.complete`` with the same seed. The packed forward equals the
per-request one to float rounding (tested at 1e-5 in ``tests/engine``); on CPU it is bit-identical whenever each
request has at least ~12 canvas rows (candidates x canvas length), see docs/serving.md.

Autoregressive twins (``config.causal_canvas``) decode token by token with per-candidate caches; they are served
one request at a time through the same path ``LocalEngine`` uses (no step-level batching).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field

import torch
from torch import Tensor

from engine.api import Completion, LocalEngine
from engine.cache import ContextCache
from engine.sample import candidate_scores, denoise_step, generate_autoregressive, predict, row_temperatures, strip_eos
from engine.serve.metrics import Metrics
from engine.serve.protocol import CompletionRequest, CompletionResult, ProtocolError
from engine.serve.sessions import SessionStore

log = logging.getLogger(__name__)


class Cancelled(Exception):
    """The request was cancelled (by its client, or because the server is stopping) before it finished."""

    def __init__(self, message: str, status: int = 499) -> None:
        super().__init__(message)
        self.status = status  # 499: the client cancelled (nginx's code); 503: the server is stopping


@dataclass(eq=False)
class Job:
    """A submitted request: what to run, who owns it, and the future its result is delivered through."""

    request: CompletionRequest
    context: list[int]
    owner: str = ""
    future: Future[CompletionResult] = field(default_factory=Future)
    submitted: float = field(default_factory=time.perf_counter)
    cancel_requested: bool = False

    @property
    def rows(self) -> int:
        return self.request.num_candidates * self.request.canvas_length

    @property
    def cancelled(self) -> bool:
        return self.cancel_requested or self.future.cancelled()


@dataclass(eq=False)
class Running:
    """One request's denoising state between steps (the loop variables of ``engine.sample.fill``)."""

    job: Job
    ctx: ContextCache
    canvas: Tensor  # (N, L) long
    masked: Tensor  # (N, L) bool
    logp: Tensor  # (N, L) float
    temps: Tensor  # (N, 1, 1)
    generator: torch.Generator
    computed: int
    admitted: float
    prefilled: float
    steps_done: int = 0
    batch_max: int = 1


class Scheduler:
    def __init__(
        self,
        engine: LocalEngine,
        *,
        batching: bool = True,
        max_batch: int = 16,
        max_batch_rows: int = 4096,
        max_queue: int = 256,
        cache_budget_bytes: int = 512 * 2**20,
        metrics: Metrics | None = None,
    ) -> None:
        self.model, self.tokenizer = engine.model, engine.tokenizer
        self.name = engine.name
        self.max_batch = max_batch if batching and not self.model.config.causal_canvas else 1
        self.max_batch_rows = max_batch_rows
        self.max_queue = max_queue
        self.metrics = metrics or Metrics()
        self.sessions = SessionStore(self.model, cache_budget_bytes)
        tok = self.tokenizer
        self._banned = torch.tensor(sorted(tok.special_ids - {tok.eos_id}), dtype=torch.long, device=self.device)
        self._pending: deque[Job] = deque()
        self._jobs: dict[tuple[str, str], Job] = {}  # (owner, request id) -> job, until its future resolves
        self._running: list[Running] = []
        self._cond = threading.Condition()
        self._stopping = False
        self._paused = False
        self._thread = threading.Thread(target=self._run, name="diffill-model", daemon=True)

    @property
    def device(self) -> torch.device:
        return self.model.embed.weight.device

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
        """Stop the worker after its current step; waiting and running requests fail with ``Cancelled``."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        with self._cond:
            pending, self._pending = list(self._pending), deque()
        for job in pending:
            self._resolve(job, None, Cancelled("the server is stopping", status=503))

    def submit(self, request: CompletionRequest, context: list[int], owner: str = "") -> Job:
        job = Job(request=request, context=context, owner=owner)
        key = (owner, request.request_id)
        with self._cond:
            if self._stopping:
                raise ProtocolError(503, "the server is stopping")
            if len(self._pending) >= self.max_queue:
                raise ProtocolError(503, f"the queue is full ({self.max_queue} requests waiting); retry later")
            if key in self._jobs:
                raise ProtocolError(409, f"request id {request.request_id!r} is already in flight")
            self._jobs[key] = job
            self._pending.append(job)
            self._cond.notify_all()
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
        while self._wait_for_work():
            self.iterate()
        for state in self._running:
            self._finish_error(state, Cancelled("the server is stopping", status=503))
        self._running = []

    def _wait_for_work(self) -> bool:
        with self._cond:
            while not self._stopping and (self._paused or not (self._pending or self._running)):
                self._cond.wait()
            return not self._stopping

    def iterate(self) -> None:
        """One scheduling round: admit who fits, drop the cancelled, run one step. The worker thread loops over
        this; a scheduler that was never started can be driven round by round (tests)."""
        with torch.inference_mode():
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
            self._pending.remove(job)
            taken.append(job)
            count, rows = count + 1, rows + job.rows
            if sid is not None:
                busy.add(sid)
        return taken

    def _admit(self, job: Job) -> None:
        """Prefill the job's context into its session cache and start its canvas (or decode it at once: AR)."""
        req, t0 = job.request, time.perf_counter()
        ctx = self.sessions.acquire(req.session_id)
        try:
            last_logits, computed = ctx.update(self.model, job.context)
        except Exception as e:
            log.exception("prefill failed for request %s", req.request_id)
            self.sessions.release(req.session_id, ctx, keep=False)
            self._resolve(job, None, e)
            return
        self.metrics.observe_prefill(computed)
        state = self._new_state(job, ctx, computed, t0)
        if self.model.config.causal_canvas:
            self._decode_autoregressive(state, last_logits)
            return
        self._running.append(state)
        self._account()

    def _new_state(self, job: Job, ctx: ContextCache, computed: int, t0: float) -> Running:
        req, device, tok = job.request, self.device, self.tokenizer
        canvas = torch.full((req.num_candidates, req.canvas_length), tok.mask_id, dtype=torch.long, device=device)
        return Running(
            job=job,
            ctx=ctx,
            canvas=canvas,
            masked=torch.ones_like(canvas, dtype=torch.bool),
            logp=torch.zeros(canvas.shape, device=device),
            temps=row_temperatures(req.num_candidates, req.options.temperature, device),
            generator=torch.Generator(device=device).manual_seed(req.options.seed),  # as engine.sample.fill
            computed=computed,
            admitted=t0,
            prefilled=time.perf_counter(),
        )

    def _decode_autoregressive(self, state: Running, last_logits: Tensor) -> None:
        req, tok = state.job.request, self.tokenizer
        try:
            state.canvas, state.logp = generate_autoregressive(
                self.model,
                state.ctx.cache,
                last_logits,
                req.canvas_length,
                req.num_candidates,
                req.options,
                eos_id=tok.eos_id,
                banned=self._banned,
            )
        except Exception as e:
            log.exception("autoregressive decoding failed for request %s", req.request_id)
            self._finish_error(state, e)
            return
        self._finish(state)

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
        """One packed forward for every running request, then each request's own commit rule."""
        t0 = time.perf_counter()
        running, eos = self._running, self.tokenizer.eos_id
        logits = self.model.denoise_packed([s.canvas for s in running], [s.ctx.cache for s in running])
        for state, step_logits in zip(running, logits, strict=True):
            opts = state.job.request.options
            pred = predict(step_logits, state.temps, self._banned, state.generator, eos)
            denoise_step(
                state.canvas, state.masked, state.logp, pred, opts.steps - state.steps_done, opts.threshold, eos
            )
            state.steps_done += 1
            state.batch_max = max(state.batch_max, len(running))
        open_rows = torch.stack([s.masked.any() for s in running]).tolist()  # the one host sync per step
        self.metrics.observe_step(time.perf_counter() - t0, len(running))
        for state, still_masked in zip(list(running), open_rows, strict=True):
            if not still_masked or state.steps_done >= state.job.request.options.steps:
                running.remove(state)
                self._finish(state)

    def _finish(self, state: Running) -> None:
        tok, req = self.tokenizer, state.job.request
        scores = candidate_scores(state.canvas, state.logp, tok.eos_id).tolist()
        completions = []
        for row, score in zip(state.canvas.tolist(), scores, strict=True):
            middle = strip_eos(row, tok.eos_id)
            completions.append(Completion(text=tok.decode(middle), score=float(score), tokens=len(middle)))
        done = time.perf_counter()
        result = CompletionResult(
            completions=completions,
            context_tokens=len(state.job.context),
            computed_tokens=state.computed,
            queue_ms=(state.admitted - state.job.submitted) * 1e3,
            prefill_ms=(state.prefilled - state.admitted) * 1e3,
            sample_ms=(done - state.prefilled) * 1e3,
            steps=state.steps_done,
            batch_max=state.batch_max,
        )
        self.sessions.release(req.session_id, state.ctx)
        self._account()
        self._resolve(state.job, result, None)

    def _finish_error(self, state: Running, error: BaseException, keep: bool = False) -> None:
        self.sessions.release(state.job.request.session_id, state.ctx, keep=keep)
        self._account()
        self._resolve(state.job, None, error)

    def _account(self) -> None:
        anonymous = sum(s.ctx.cache.nbytes for s in self._running if s.job.request.session_id is None)
        self.sessions.account(anonymous)
