"""Run a batch of LLM queries of one shape with the KV cache on (imports torch lazily).

A query is one prefill forward pass over ``input_tokens`` prompt tokens, which fills the KV cache
and yields the first output token, then ``output_tokens - 1`` decode passes of one token each
against the cache: greedy decoding whose length is forced by construction (no end-of-sequence
token can stop it early, as ``min_new_tokens = max_new_tokens`` would force in ``generate``).
A batch of ``batch_size`` such queries runs together: one prefill of the batch (in chunks of at
most ``PREFILL_CHUNK_TOKENS`` tokens over all queries, as a chunked-prefill engine does), then
decode steps that advance every query by one token.

The loop is written out rather than calling ``model.generate``: measured on an H100 with
transformers 5.17, ``generate``'s own per-step work made decode 2-4x slower than the forward
passes themselves (about 80 ms per token for 7B Llama models, growing with the number of tokens
generated), which would have attributed host overhead of one library call to the model.

Decode attention (``decode_attention="grouped"``, the default): transformers' sdpa path copies
K and V out to every query head whenever an attention mask is given (always, with a static
cache), which at batch 128 made a Mistral-7B decode step take 95 ms on an H200 instead of about
10. The grouped path views the query heads of each KV head as one [batch, kv_heads, group, dim]
block and multiplies it against that head's cache once, as serving engines' decode kernels do; a
prefill folds the group into the query rows of one fused attention call.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

from ..errors import DataError
from .catalog import ArchSpec
from .memory import RESERVE_FRACTION, kv_cache_bytes, kv_shape

__all__ = ["HFRunner", "DTYPES", "DECODE_ATTENTION", "DeviceMemoryError", "grouped_attention_forward"]

DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
DECODE_ATTENTION = ("grouped", "sdpa")
GROUPED_NAME = "energyopt_grouped"


class DeviceMemoryError(RuntimeError):
    """A run did not fit in the device's memory (the runner freed its graphs and caches)."""


def grouped_attention_forward(module: Any, query: Any, key: Any, value: Any, attention_mask: Any,
                              dropout: float = 0.0, scaling: float | None = None, is_causal: bool | None = None,
                              **kwargs: Any) -> tuple[Any, None]:
    """Attention that reads each KV head once for all the query heads that share it.

    ``query`` [b, heads, q, dim], ``key``/``value`` [b, kv_heads, kv_len, dim], ``attention_mask``
    [b or 1, 1, q, kv_len] (boolean: attend where True; or additive) or None; returns
    [b, q, heads, dim] as transformers' attention functions do. Query head ``h`` uses KV head
    ``h // group`` (the order of transformers' ``repeat_kv``).
    """
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    b, heads, q_len, dim = query.shape
    kv_heads = key.shape[1]
    group = heads // kv_heads
    scale = scaling if scaling is not None else dim ** -0.5
    if q_len == 1:
        q = query.reshape(b, kv_heads, group, dim)
        scores = torch.matmul(q, key.transpose(-1, -2)).float() * scale  # [b, kv_heads, group, kv_len]
        if attention_mask is not None:
            m = attention_mask[:, :, -1:, :]
            scores = scores.masked_fill(~m, float("-inf")) if m.dtype == torch.bool else scores + m.float()
        probs = torch.softmax(scores, dim=-1).to(value.dtype)
        out = torch.matmul(probs, value)  # [b, kv_heads, group, dim]
        return out.reshape(b, 1, heads, dim), None
    if attention_mask is None or group == 1 or attention_mask.shape[1] != 1 or dropout:
        # no copy to avoid: plain causal attention (sdpa takes grouped KV natively without a mask)
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    # a prefill against a cache: fold each group's query heads into the query rows of its KV head
    q = query.reshape(b, kv_heads, group * q_len, dim)
    mb, _, mq, ml = attention_mask.shape
    m = attention_mask.unsqueeze(2).expand(mb, 1, group, mq, ml).reshape(mb, 1, group * mq, ml)
    out = torch.nn.functional.scaled_dot_product_attention(q, key, value, attn_mask=m, scale=scale)
    return out.reshape(b, heads, q_len, dim).transpose(1, 2).contiguous(), None


def _register_grouped_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(GROUPED_NAME, grouped_attention_forward)
    ALL_MASK_ATTENTION_FUNCTIONS.register(GROUPED_NAME, sdpa_mask)


class HFRunner:
    """A Hugging Face causal LM on one device, random weights from a catalog spec or real weights."""

    def __init__(self, spec: ArchSpec | None = None, *, model_dir: Path | None = None, device: str = "cuda",
                 dtype: str = "bf16", seed: int = 0, threads: int | None = None, cuda_graphs: bool = True,
                 decode_attention: str = "grouped", memory_bytes: int | None = None):
        import torch
        import transformers

        if (spec is None) == (model_dir is None):
            raise DataError("give either a catalog LLM or --model-dir, not both")
        if dtype not in DTYPES:
            raise DataError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        if decode_attention not in DECODE_ATTENTION:
            raise DataError(f"--decode-attention must be one of {', '.join(DECODE_ATTENTION)}, got {decode_attention!r}")
        if device == "cuda" and not torch.cuda.is_available():
            raise DataError("--device cuda: no CUDA GPU is visible to torch")
        if threads:
            torch.set_num_threads(threads)
        self.torch = torch
        self.device = torch.device("cuda:0" if device == "cuda" else "cpu")
        self.dtype_name = dtype
        tdtype = getattr(torch, DTYPES[dtype])
        torch.manual_seed(seed)
        self.gen = torch.Generator(device=self.device).manual_seed(seed)
        kw = {"dtype": tdtype} if _major(transformers.__version__) >= 5 else {"torch_dtype": tdtype}
        if model_dir is not None:
            if not Path(model_dir).is_dir():
                raise DataError(f"{model_dir}: model directory not found")
            self.model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, **kw).to(self.device)
        else:
            assert spec is not None
            config = transformers.AutoConfig.for_model(spec.family, **spec.config)
            with self.device:
                self.model = transformers.AutoModelForCausalLM.from_config(config, **kw)
        self.model.eval()
        cfg = self.model.config
        self.vocab_size = int(cfg.vocab_size)
        self.context_tokens = int(getattr(cfg, "max_position_embeddings", None) or 2048)
        self.versions = {"torch_version": torch.__version__, "transformers_version": transformers.__version__}
        self.decode_loop = "cuda_graph" if (self.device.type == "cuda" and cuda_graphs) else "eager"
        if self.decode_loop == "cuda_graph" and getattr(cfg, "sliding_window", None):
            # transformers' sliding-window static cache keeps its position in a Python int, which a
            # captured graph would freeze; the window (4096 for Mistral-7B) binds only beyond it.
            cfg.sliding_window = None
        self.decode_attention = "sdpa"
        if decode_attention == "grouped":
            if self.model._can_set_attn_implementation():
                _register_grouped_attention()
                self.model.set_attn_implementation(GROUPED_NAME)
                self.decode_attention = "grouped"
            else:  # the model's own attention code (Falcon): neither path applies
                self.decode_attention = ""
        elif cfg._attn_implementation != "sdpa" and self.model._can_set_attn_implementation():
            self.model.set_attn_implementation("sdpa")
        self.kv = kv_shape(cfg.to_dict(), bytes_per_value=torch.empty((), dtype=tdtype).element_size())
        self.weight_bytes = sum(p.numel() * p.element_size() for p in self.model.parameters())
        if memory_bytes is None and self.device.type == "cuda":
            memory_bytes = int(torch.cuda.get_device_properties(self.device).total_memory)
        # captured graphs keep their caches: hold as many as fit beside the weights (least recently used go)
        self.cache_budget_bytes = (
            (1.0 - RESERVE_FRACTION) * memory_bytes - self.weight_bytes if memory_bytes else float("inf"))
        self.fallback_reason = ""
        self._graphs: OrderedDict[tuple[int, int], dict[str, Any]] = OrderedDict()

    def parameters_b(self) -> float:
        return sum(p.numel() for p in self.model.parameters()) / 1e9

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    # -- CUDA-graph decode ---------------------------------------------------------------------
    # One static KV cache and one captured decode step per (batch size, cache-length bucket); the
    # step (forward pass, argmax, feeding the tokens back, advancing the position) replays as one
    # graph, so the host CPU's speed drops out of the measurement. Attention spans the bucket
    # (masked), at most bucket - 1 positions beyond the real context: 512-token buckets for single
    # queries, 128-token buckets for batches, whose masked positions cost in proportion to the batch.
    BUCKET_TOKENS = 512
    BATCH_BUCKET_TOKENS = 128
    PREFILL_CHUNK_TOKENS = 32768  # tokens of all queries together in one prefill forward pass

    def bucket_tokens(self, batch_size: int = 1) -> int:
        return self.BUCKET_TOKENS if batch_size == 1 else self.BATCH_BUCKET_TOKENS

    def bucket(self, total_tokens: int, batch_size: int = 1) -> int:
        b = self.bucket_tokens(batch_size)
        return -(-total_tokens // b) * b

    def cache_bucket_for_batch(self, batch_size: int) -> int | None:
        """The cache's length bucket [tokens] at a batch size (None: the eager loop's exact cache)."""
        return self.bucket_tokens(batch_size) if self.decode_loop == "cuda_graph" else None

    def prepare(self, input_tokens: int, output_tokens: int, batch_size: int = 1) -> None:
        """Capture the decode graph for this batch's bucket (outside any measurement window)."""
        if self.decode_loop != "cuda_graph":
            return
        key = (batch_size, self.bucket(input_tokens + output_tokens, batch_size))
        if key in self._graphs:
            self._graphs.move_to_end(key)
            return
        need = kv_cache_bytes(self.kv, batch_size, key[1])
        self._evict(need)
        try:
            try:
                self._graphs[key] = self._capture(key[1], batch_size=batch_size)
            except self.torch.OutOfMemoryError:
                self._drop_graphs()  # free every other cache and try once more
                self._graphs[key] = self._capture(key[1], batch_size=batch_size)
        except self.torch.OutOfMemoryError as exc:
            self._drop_graphs()
            where = f"capturing the decode step at batch {batch_size}, {key[1]} tokens"
            raise DeviceMemoryError(f"{where}: {_first_line(exc)}") from None
        except Exception as exc:  # capture unsupported by this model's code: measure eagerly, labelled
            self.decode_loop = "eager"
            self.fallback_reason = f"{type(exc).__name__}: {_first_line(exc)}"
            self._drop_graphs()

    def _held_bytes(self) -> int:
        return sum(kv_cache_bytes(self.kv, b, n) for b, n in self._graphs)

    def _evict(self, need: int) -> None:
        while self._graphs and self._held_bytes() + need > self.cache_budget_bytes:
            self._graphs.popitem(last=False)
            self._empty_cache()

    def _drop_graphs(self) -> None:
        self._graphs.clear()
        self._empty_cache()

    def _empty_cache(self) -> None:
        import gc

        gc.collect()
        if self.device.type == "cuda":
            self.torch.cuda.empty_cache()

    def _capture(self, max_len: int, use_graph: bool = True, batch_size: int = 1) -> dict[str, Any]:
        """Static cache + decode step for one (batch size, bucket); ``use_graph=False`` keeps the
        step eager (same buffers and cache), which lets the static-cache logic be tested on a CPU."""
        torch = self.torch
        from transformers import StaticCache

        cache = StaticCache(config=self.model.config, max_cache_len=max_len)
        tok = torch.zeros((batch_size, 1), dtype=torch.long, device=self.device)
        pos = torch.zeros((1,), dtype=torch.long, device=self.device)
        with torch.inference_mode():
            # fill the cache's layers (lazily created on first use, at this batch size) with a one-token prefill
            self.model(input_ids=tok, past_key_values=cache, cache_position=pos, use_cache=True)
            pos.fill_(1)

            def step() -> None:
                out = self.model(input_ids=tok, past_key_values=cache, cache_position=pos, use_cache=True)
                tok.copy_(out.logits[:, -1:].argmax(-1))
                pos.add_(1)

            run_step: Any = step
            if use_graph:
                side = torch.cuda.Stream(self.device)
                side.wait_stream(torch.cuda.current_stream(self.device))
                with torch.cuda.stream(side):
                    for _ in range(2):
                        self.model(input_ids=tok, past_key_values=cache, cache_position=pos, use_cache=True)
                torch.cuda.current_stream(self.device).wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    step()
                run_step = graph.replay
            # in place, inside inference mode (the cache's tensors are inference tensors): the
            # graph's addresses stay valid
            cache.reset()
        self.synchronize()
        return {"step": run_step, "cache": cache, "tok": tok, "pos": pos}

    def _prefill(self, ids: Any, cache: Any, static: bool) -> Any:
        """Prefill the batch ``ids`` [b, n] into ``cache``, in chunks of at most PREFILL_CHUNK_TOKENS
        tokens over the batch; returns the first output token of every query [b, 1]."""
        torch = self.torch
        b, n = ids.shape
        chunk = max(1, self.PREFILL_CHUNK_TOKENS // b)
        out = None
        for s in range(0, n, chunk):
            e = min(n, s + chunk)
            kw = {"cache_position": torch.arange(s, e, device=self.device)} if static else {}
            out = self.model(input_ids=ids[:, s:e], past_key_values=cache, use_cache=True, logits_to_keep=1, **kw)
        assert out is not None
        return out.logits[:, -1:].argmax(-1)

    def _run_graph(self, ids: Any, input_tokens: int, output_tokens: int) -> None:
        torch = self.torch
        batch = int(ids.shape[0])
        g = self._graphs[(batch, self.bucket(input_tokens + output_tokens, batch))]
        with torch.inference_mode():
            g["cache"].reset()
            g["tok"].copy_(self._prefill(ids, g["cache"], static=True))
            g["pos"].fill_(input_tokens)
            for _ in range(output_tokens - 1):
                g["step"]()
        self.synchronize()
        end = int(g["pos"].item())
        cached = int(g["cache"].get_seq_length())
        want = input_tokens + output_tokens - 1
        if end != want or cached != want:
            raise RuntimeError(f"decode ended at position {end} with {cached} cached tokens; expected {want}")

    def _ids(self, batch_size: int, input_tokens: int) -> Any:
        lo = min(100, self.vocab_size - 2)
        return self.torch.randint(lo, self.vocab_size - 1, (batch_size, input_tokens), device=self.device,
                                  generator=self.gen)

    def run(self, input_tokens: int, output_tokens: int, batch_size: int = 1) -> None:
        """Prefill ``batch_size`` prompts of ``input_tokens`` random tokens, then decode exactly
        ``output_tokens`` tokens of each; raises DeviceMemoryError where the batch does not fit."""
        try:
            self._run(input_tokens, output_tokens, batch_size)
        except self.torch.OutOfMemoryError as exc:
            self._drop_graphs()
            raise DeviceMemoryError(f"batch {batch_size} of {input_tokens}x{output_tokens} tokens: {_first_line(exc)}") from None

    def _run(self, input_tokens: int, output_tokens: int, batch_size: int) -> None:
        torch = self.torch
        if self.decode_loop == "cuda_graph":
            self.prepare(input_tokens, output_tokens, batch_size)
        if self.decode_loop == "cuda_graph":
            self._run_graph(self._ids(batch_size, input_tokens), input_tokens, output_tokens)
            return
        from transformers import DynamicCache

        ids = self._ids(batch_size, input_tokens)
        generated = 0
        with torch.inference_mode():
            cache = DynamicCache(config=self.model.config)
            tok = self._prefill(ids, cache, static=False)
            generated += 1
            for _ in range(output_tokens - 1):
                out = self.model(input_ids=tok, past_key_values=cache, use_cache=True)
                tok = out.logits[:, -1:].argmax(-1)
                generated += 1
            seq = cache.get_seq_length()
        self.synchronize()
        # the cache holds the prompt and every generated token but the last (not fed back)
        if generated != output_tokens or int(seq) != input_tokens + output_tokens - 1 or tok.shape[0] != batch_size:
            raise RuntimeError(
                f"ran {generated} decode steps of {tok.shape[0]} queries over a cache of {int(seq)} tokens; expected "
                f"{output_tokens} steps of {batch_size} and {input_tokens + output_tokens - 1} cached tokens"
            )


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0][:200] if text else ""


def _major(version: str) -> int:
    try:
        return int(version.split(".")[0])
    except ValueError:
        return 0


def describe_runner(r: Any) -> dict[str, Any]:
    return {"dtype": r.dtype_name, **r.versions}
