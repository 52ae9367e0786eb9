"""A continuous-batching engine over one LLM instance: the plan's lanes are its slots (imports torch lazily).

An instance at batch size ``b`` has ``b`` slots; slot ``l`` runs the queries of the plan's lane
``l`` one after another, in the plan's order. A query enters its slot with a prefill of its own
prompt (which yields its first output token) and then advances one token per decode step; each
decode step advances every running query of the instance by one token, and a slot whose query
has produced its last token takes its lane's next query at once (continuous batching, as vLLM,
TGI and SGLang run). A slot with no query left stays in the batch, padded (as serving engines pad
to the batch sizes they captured), until the instance's last query ends.

The KV cache holds ``b`` rows of ``capacity`` tokens per layer; a query's prefill writes its prompt
into its slot's row from position 0, each decode step appends one token per row at that row's own
length, and decode attention reads each row's own tokens only (:mod:`.attention`). The decode step
(forward pass, greedy token, lengths advanced) is one CUDA graph on a GPU; prefills run eagerly
and are queued behind it without waiting, so the host's speed drops out unless it falls behind.

Each step's end is recorded on the device's own clock (CUDA events, read once at the end), so
nothing waits for the device during the run; :class:`EngineLog` holds what the energy attribution
needs (:mod:`.measure`). Weights are random (the characterization's builds): time and energy
depend on the shapes and token counts, not on the weights' values or the tokens produced.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import DataError
from .attention import ragged_decode_reference, ragged_decode_triton, triton_available

__all__ = ["SlotEngine", "EngineLog", "EngineRunner", "run_lanes", "slots_attention_forward", "SLOTS_NAME", "capacity_tokens"]

SLOTS_NAME = "energyopt_slots"
CAPACITY_BLOCK = 64
_ENGINE: SlotEngine | None = None  # the engine whose forward pass is running (one per process at a time)


def capacity_tokens(lanes: list[list[tuple[int, int]]]) -> int:
    """Cache rows' length [tokens]: the longest query's prompt plus output, to whole blocks."""
    longest = max((tin + tout for lane in lanes for tin, tout in lane), default=1)
    return -(-longest // CAPACITY_BLOCK) * CAPACITY_BLOCK


@dataclass
class EngineLog:
    """What one run did, in order. Times are seconds on the host's ``perf_counter`` clock.

    Steps are numbered in the order they ran; ``step_is_prefill`` tells a prefill (one query's
    prompt) from a decode step (every running query of the instance, ``step_active`` of them).
    Query ``i`` (numbered lane by lane, in lane order) ran its prefill at step ``prefill_step[i]``
    and its decode steps from ``first_step[i]`` to ``last_step[i]`` (both decode steps; -1 for
    both when it has one output token, which the prefill yields).
    """

    t0_s: float
    step_end_s: np.ndarray
    step_is_prefill: np.ndarray
    step_active: np.ndarray
    prefill_step: np.ndarray
    first_step: np.ndarray
    last_step: np.ndarray
    lane: np.ndarray
    input_tokens: np.ndarray
    slots: int


def run_lanes(lanes: list[list[tuple[int, int]]], slots: int, prefill: Callable[[int, int], None],
              decode: Callable[[], None], release: Callable[[int], None], mark: Callable[[], None]) -> EngineLog:
    """Continuous batching over ``slots`` slots, slot ``l`` running lane ``l``'s queries in order:
    every slot takes its first query, then each decode step advances every running query by one
    token and a slot whose query has its last token takes its lane's next query at once (a query
    of one output token ends with its prefill). ``prefill(slot, input_tokens)``, ``decode()`` and
    ``release(slot)`` act; ``mark()`` is called after each prefill and decode step to time it. The
    log's times are left empty for the caller (it knows its clock)."""
    queries = [(lane_i, tin, tout) for lane_i, lane in enumerate(lanes) for tin, tout in lane]
    n_q = len(queries)
    prefill_step = np.full(n_q, -1, dtype=np.int64)
    first_step = np.full(n_q, -1, dtype=np.int64)
    last_step = np.full(n_q, -1, dtype=np.int64)
    offsets = np.cumsum([0] + [len(lane) for lane in lanes])
    nxt = [0] * len(lanes)
    current = np.full(slots, -1, dtype=np.int64)
    remaining = np.zeros(slots, dtype=np.int64)
    is_prefill: list[bool] = []
    active_at: list[int] = []

    def start(slot: int) -> None:
        while slot < len(lanes) and nxt[slot] < len(lanes[slot]):
            q = int(offsets[slot] + nxt[slot])
            nxt[slot] += 1
            _, tin, tout = queries[q]
            prefill(slot, tin)
            mark()
            prefill_step[q] = len(is_prefill)
            is_prefill.append(True)
            active_at.append(1)
            if tout > 1:
                current[slot], remaining[slot] = q, tout - 1
                return
        current[slot] = -1
        release(slot)

    for slot in range(slots):
        start(slot)
    while (current >= 0).any():
        running = current >= 0
        decode()
        mark()
        k = len(is_prefill)
        is_prefill.append(False)
        active_at.append(int(running.sum()))
        qs = current[running]
        first_step[qs] = np.where(first_step[qs] < 0, k, first_step[qs])
        remaining[running] -= 1
        for done in np.flatnonzero(running & (remaining == 0)).tolist():
            last_step[current[done]] = k
            start(done)
    return EngineLog(0.0, np.empty(0), np.array(is_prefill, dtype=bool), np.array(active_at, dtype=np.int64),
                     prefill_step, first_step, last_step, np.array([q[0] for q in queries], dtype=np.int64),
                     np.array([q[1] for q in queries], dtype=np.int64), slots)


def slots_attention_forward(module: Any, query: Any, key: Any, value: Any, attention_mask: Any,
                            dropout: float = 0.0, scaling: float | None = None, is_causal: bool | None = None,
                            **kwargs: Any) -> tuple[Any, None]:
    """transformers attention function of the engine: the model runs without its own cache and
    this function keeps the KV rows (``query`` [b, heads, q, dim], returns [b, q, heads, dim])."""
    import torch

    eng = _ENGINE
    if eng is None:
        raise RuntimeError("the slots attention runs only inside a SlotEngine step")
    layer = int(module.layer_idx)
    kc, vc = eng.k_cache[layer], eng.v_cache[layer]
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    if eng.mode == "decode":
        kc[eng.rows, :, eng.lengths] = key[:, :, 0]
        vc[eng.rows, :, eng.lengths] = value[:, :, 0]
        out = eng.attend(query[:, :, 0], kc, vc, eng.attend_lengths, scale)
        return out[:, None], None
    n = key.shape[2]
    kc[eng.slot, :, :n] = key[0]
    vc[eng.slot, :, :n] = value[0]
    out = torch.nn.functional.scaled_dot_product_attention(query, key, value, is_causal=True, scale=scale,
                                                           enable_gqa=True)
    return out.transpose(1, 2), None


def _register() -> None:
    # No mask function is registered for this attention: transformers then builds no mask at all.
    # With one, a forward pass given position ids and no cache checks them for packed sequences
    # (``.all()`` on a device tensor), which made every prefill wait for the device.
    from transformers import AttentionInterface

    AttentionInterface.register(SLOTS_NAME, slots_attention_forward)


class SlotEngine:
    """``slots`` rows of KV cache of ``capacity`` tokens on the model of an :class:`HFRunner`."""

    def __init__(self, runner: Any, slots: int, capacity: int, attention: str = "auto"):
        torch = runner.torch
        self.torch = torch
        self.runner = runner
        self.model = runner.model
        self.device = runner.device
        self.slots = int(slots)
        self.capacity = int(capacity)
        if not self.model._can_set_attn_implementation():
            raise DataError(f"{type(self.model).__name__}: the replay engine needs a model whose attention can be set")
        cuda = self.device.type == "cuda"
        if attention == "auto":
            attention = "triton" if cuda and triton_available() else "reference"
        if attention not in ("triton", "reference"):
            raise DataError(f"attention must be auto, triton or reference, got {attention!r}")
        self.attention = attention
        self.attend = ragged_decode_triton if attention == "triton" else ragged_decode_reference
        _register()
        self.model.set_attn_implementation(SLOTS_NAME)
        kv = runner.kv
        dtype = next(self.model.parameters()).dtype
        shape = (self.slots, kv.kv_heads, self.capacity, kv.head_dim)
        try:
            self.k_cache = [torch.zeros(shape, dtype=dtype, device=self.device) for _ in range(kv.layers)]
            self.v_cache = [torch.zeros(shape, dtype=dtype, device=self.device) for _ in range(kv.layers)]
        except torch.OutOfMemoryError:
            self.k_cache = self.v_cache = []
            raise DataError(f"the KV cache of {self.slots} slots x {self.capacity} tokens does not fit in the "
                            "device's memory beside the weights") from None
        self.rows = torch.arange(self.slots, device=self.device)
        self.lengths = torch.zeros(self.slots, dtype=torch.long, device=self.device)
        self.active = torch.zeros(self.slots, dtype=torch.long, device=self.device)
        self.attend_lengths = torch.ones(self.slots, dtype=torch.long, device=self.device)
        self.pos = torch.zeros((self.slots, 1), dtype=torch.long, device=self.device)
        self.tok = torch.zeros((self.slots, 1), dtype=torch.long, device=self.device)
        lo = min(100, runner.vocab_size - 2)
        self.prompt = torch.randint(lo, runner.vocab_size - 1, (1, self.capacity), device=self.device,
                                    generator=runner.gen)
        self.positions = torch.arange(self.capacity, device=self.device)[None, :]
        self.mode = "decode"
        self.slot = 0
        self._after_decode = False  # a decode step was queued since the device last caught up
        self._graph: Any = None
        if cuda and runner.decode_loop == "cuda_graph":
            self._capture()

    # -- the two kinds of step -----------------------------------------------------------------
    def _decode(self) -> None:
        self.pos.copy_(self.lengths.view(-1, 1))
        self.attend_lengths.copy_(self.lengths + 1)  # once per step, not per layer
        out = self.model(input_ids=self.tok, position_ids=self.pos, use_cache=False)
        self.tok.copy_(out.logits[:, -1:].argmax(-1))
        self.lengths.add_(self.active)

    def _capture(self) -> None:
        torch = self.torch
        global _ENGINE
        _ENGINE, self.mode = self, "decode"
        try:
            with torch.inference_mode():
                side = torch.cuda.Stream(self.device)
                side.wait_stream(torch.cuda.current_stream(self.device))
                with torch.cuda.stream(side):
                    for _ in range(2):
                        self._decode()
                torch.cuda.current_stream(self.device).wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    self._decode()
            self._graph = graph
            self.reset()
        finally:
            _ENGINE = None
        torch.cuda.synchronize(self.device)

    def decode(self) -> None:
        """One decode step of every slot (running or padded)."""
        global _ENGINE
        self._after_decode = True
        _ENGINE, self.mode = self, "decode"
        try:
            if self._graph is not None:
                self._graph.replay()
            else:
                with self.torch.inference_mode():
                    self._decode()
        finally:
            _ENGINE = None

    def prefill(self, slot: int, input_tokens: int) -> None:
        """The prompt of a query entering ``slot``: its KV into the slot's row and its first token.

        A refill after a decode step first waits for the device to finish the steps queued: a
        serving engine learns that a query has ended by reading its last token from the device.
        This engine forces the output lengths, so without the wait it would queue decode steps
        ahead of the device and hide a varying part of a refill's host-bound prefill behind them
        (measured on an H200: Qwen2.5-0.5B's refill prefills took 5-25 ms of device time, back to
        back ones 15 ms; ``data/replay/README.md``)."""
        global _ENGINE
        if not 1 <= input_tokens <= self.capacity:
            raise ValueError(f"{input_tokens} prompt tokens do not fit a cache row of {self.capacity}")
        if self._after_decode:
            self.synchronize()
            self._after_decode = False
        _ENGINE, self.mode, self.slot = self, "prefill", int(slot)
        try:
            with self.torch.inference_mode():
                out = self.model(input_ids=self.prompt[:, :input_tokens], position_ids=self.positions[:, :input_tokens],
                                 use_cache=False, logits_to_keep=1)
                self.tok[slot].copy_(out.logits[0, -1:].argmax(-1))
                self.lengths[slot].fill_(input_tokens)
                self.active[slot].fill_(1)
        finally:
            _ENGINE, self.mode = None, "decode"

    def release(self, slot: int) -> None:
        """A slot whose lane has no query left: padded from now on."""
        with self.torch.inference_mode():
            self.active[slot].fill_(0)
            self.lengths[slot].fill_(0)

    def reset(self) -> None:
        self._after_decode = False
        with self.torch.inference_mode():
            self.active.zero_()
            self.lengths.zero_()

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    # -- a whole run ---------------------------------------------------------------------------
    def warm_up(self, input_tokens: list[int], decode_steps: int = 4) -> None:
        """Every prompt length once (a length new to the process costs extra the first time) and a
        few decode steps, outside any measurement."""
        for n in sorted(set(int(x) for x in input_tokens)):
            self.prefill(0, n)
        for _ in range(decode_steps):
            self.decode()
        self.reset()
        self.synchronize()

    def run(self, lanes: list[list[tuple[int, int]]]) -> EngineLog:
        """Run every lane's queries ``(input_tokens, output_tokens)`` in order; returns the log."""
        if len(lanes) > self.slots:
            raise ValueError(f"{len(lanes)} lanes for {self.slots} slots")
        marks: list[Any] = []
        cuda = self.device.type == "cuda"

        def mark() -> None:
            if cuda:
                ev = self.torch.cuda.Event(enable_timing=True)
                ev.record()
                marks.append(ev)
            else:
                marks.append(time.perf_counter())

        self.reset()
        self.synchronize()
        origin = None
        if cuda:
            origin = self.torch.cuda.Event(enable_timing=True)
            origin.record()
        t0 = time.perf_counter()
        log = run_lanes(lanes, self.slots, self.prefill, self.decode, self.release, mark)
        self.synchronize()
        if cuda:
            assert origin is not None
            log.step_end_s = t0 + np.array([origin.elapsed_time(ev) for ev in marks], dtype=float) / 1000.0
        else:
            log.step_end_s = np.array(marks, dtype=float)
        log.t0_s = t0
        return log

    def close(self) -> None:
        self._graph = None
        self.k_cache = self.v_cache = []
        self.runner._empty_cache()


class EngineRunner:
    """The characterization's runner interface (``prepare``/``run`` of b identical queries) on the
    :class:`SlotEngine`: b slots, one query each, a prefill per query and decode attention over
    each query's own tokens, exactly as ``energyopt replay`` runs a plan, so that models fitted on
    its rows predict what a replay measures. Wraps an :class:`~energyopt.characterize.runner.HFRunner`
    (its model, memory bookkeeping and provenance); rows say ``decode_attention=ragged``."""

    decode_attention = "ragged"

    def __init__(self, runner: Any, attention: str = "auto"):
        self.runner = runner
        self.attention = attention
        self._engine: SlotEngine | None = None
        self._key: tuple[int, int] | None = None
        self._warm: set[int] = set()  # prompt lengths the current engine has prefilled once

    def __getattr__(self, name: str) -> Any:  # kv, weight_bytes, versions, context_tokens, ...
        return getattr(self.runner, name)

    @property
    def decode_loop(self) -> str:
        return str(self.runner.decode_loop)

    def cache_bucket_for_batch(self, batch_size: int) -> int:
        return CAPACITY_BLOCK

    def prepare(self, input_tokens: int, output_tokens: int, batch_size: int = 1) -> None:
        """The engine for this batch (KV rows, decode graph) and one prefill of this prompt length,
        outside any measurement window; one engine is kept at a time."""
        key = (int(batch_size), capacity_tokens([[(input_tokens, output_tokens)]]))
        if self._key != key:
            self.close()
            self._engine = SlotEngine(self.runner, key[0], key[1], attention=self.attention)
            self._key = key
        assert self._engine is not None
        if int(input_tokens) not in self._warm:
            self._engine.warm_up([input_tokens], decode_steps=2)
            self._warm.add(int(input_tokens))

    def run(self, input_tokens: int, output_tokens: int, batch_size: int = 1) -> None:
        """b identical queries through the engine; nothing else in the measured window (the sweep
        calls :meth:`prepare` before it; an engine not prepared for this batch is made here)."""
        if self._key != (int(batch_size), capacity_tokens([[(input_tokens, output_tokens)]])) \
                or int(input_tokens) not in self._warm:
            self.prepare(input_tokens, output_tokens, batch_size)
        assert self._engine is not None
        log = self._engine.run([[(input_tokens, output_tokens)] for _ in range(batch_size)])
        done = int(np.sum(log.step_is_prefill))
        if done != batch_size or int(np.sum(~log.step_is_prefill)) != output_tokens - 1:
            raise RuntimeError(f"the engine ran {done} prefills and {int(np.sum(~log.step_is_prefill))} decode steps; "
                               f"expected {batch_size} and {output_tokens - 1}")

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
        self._engine, self._key = None, None
        self._warm = set()
