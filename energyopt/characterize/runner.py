"""Run one LLM query of a given shape with the KV cache on (imports torch lazily).

A query is one prefill forward pass over ``input_tokens`` prompt tokens, which fills the KV cache
and yields the first output token, then ``output_tokens - 1`` decode passes of one token each
against the cache: greedy decoding whose length is forced by construction (no end-of-sequence
token can stop it early, as ``min_new_tokens = max_new_tokens`` would force in ``generate``).

The loop is written out rather than calling ``model.generate``: measured on an H100 with
transformers 5.17, ``generate``'s own per-step work made decode 2-4x slower than the forward
passes themselves (about 80 ms per token for 7B Llama models, growing with the number of tokens
generated), which would have attributed host overhead of one library call to the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import DataError
from .catalog import ArchSpec

__all__ = ["HFRunner", "DTYPES"]

DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


class HFRunner:
    """A Hugging Face causal LM on one device, random weights from a catalog spec or real weights."""

    def __init__(self, spec: ArchSpec | None = None, *, model_dir: Path | None = None, device: str = "cuda",
                 dtype: str = "bf16", seed: int = 0, threads: int | None = None, cuda_graphs: bool = True):
        import torch
        import transformers

        if (spec is None) == (model_dir is None):
            raise DataError("give either a catalog LLM or --model-dir, not both")
        if dtype not in DTYPES:
            raise DataError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
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
        self.fallback_reason = ""
        self._graphs: dict[int, dict[str, Any]] = {}

    def parameters_b(self) -> float:
        return sum(p.numel() for p in self.model.parameters()) / 1e9

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    # -- CUDA-graph decode ---------------------------------------------------------------------
    # One static KV cache and one captured decode step per cache-length bucket; the step (forward
    # pass, argmax, feeding the token back, advancing the position) replays as one graph, so the
    # host CPU's speed drops out of the measurement. Attention spans the bucket (masked), at most
    # BUCKET_TOKENS - 1 positions beyond the real context.
    BUCKET_TOKENS = 512

    def bucket(self, total_tokens: int) -> int:
        b = self.BUCKET_TOKENS
        return -(-total_tokens // b) * b

    def prepare(self, input_tokens: int, output_tokens: int) -> None:
        """Capture the decode graph for this query's bucket (outside any measurement window)."""
        if self.decode_loop != "cuda_graph":
            return
        key = self.bucket(input_tokens + output_tokens)
        if key in self._graphs:
            return
        try:
            self._graphs[key] = self._capture(key)
        except Exception as exc:  # capture unsupported by this model's code: measure eagerly, labelled
            self.decode_loop = "eager"
            self.fallback_reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
            self._graphs.clear()
            self.torch.cuda.empty_cache()

    def _capture(self, max_len: int, use_graph: bool = True) -> dict[str, Any]:
        """Static cache + decode step for one bucket; ``use_graph=False`` keeps the step eager
        (same buffers and cache), which lets the static-cache logic be tested on a CPU."""
        torch = self.torch
        from transformers import StaticCache

        cache = StaticCache(config=self.model.config, max_cache_len=max_len)
        tok = torch.zeros((1, 1), dtype=torch.long, device=self.device)
        pos = torch.zeros((1,), dtype=torch.long, device=self.device)
        with torch.inference_mode():
            # fill the cache's layers (lazily created on first use) with a one-token prefill
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

    def _run_graph(self, ids: Any, input_tokens: int, output_tokens: int) -> None:
        torch = self.torch
        g = self._graphs[self.bucket(input_tokens + output_tokens)]
        with torch.inference_mode():
            g["cache"].reset()
            prefill_pos = torch.arange(input_tokens, device=self.device)
            out = self.model(input_ids=ids, past_key_values=g["cache"], cache_position=prefill_pos,
                             use_cache=True, logits_to_keep=1)
            g["tok"].copy_(out.logits[:, -1:].argmax(-1))
            g["pos"].fill_(input_tokens)
            for _ in range(output_tokens - 1):
                g["step"]()
        self.synchronize()
        end = int(g["pos"].item())
        cached = int(g["cache"].get_seq_length())
        want = input_tokens + output_tokens - 1
        if end != want or cached != want:
            raise RuntimeError(f"decode ended at position {end} with {cached} cached tokens; expected {want}")

    def run(self, input_tokens: int, output_tokens: int) -> None:
        """Prefill ``input_tokens`` random tokens, then decode exactly ``output_tokens`` tokens."""
        torch = self.torch
        if self.decode_loop == "cuda_graph":
            self.prepare(input_tokens, output_tokens)
        if self.decode_loop == "cuda_graph":
            lo = min(100, self.vocab_size - 2)
            ids = torch.randint(lo, self.vocab_size - 1, (1, input_tokens), device=self.device, generator=self.gen)
            self._run_graph(ids, input_tokens, output_tokens)
            return
        from transformers import DynamicCache

        lo = min(100, self.vocab_size - 2)
        ids = torch.randint(lo, self.vocab_size - 1, (1, input_tokens), device=self.device, generator=self.gen)
        generated = 0
        with torch.inference_mode():
            cache = DynamicCache(config=self.model.config)
            out = self.model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
            tok = out.logits[:, -1:].argmax(-1)
            generated += 1
            for _ in range(output_tokens - 1):
                out = self.model(input_ids=tok, past_key_values=cache, use_cache=True)
                tok = out.logits[:, -1:].argmax(-1)
                generated += 1
            seq = cache.get_seq_length()
        self.synchronize()
        # the cache holds the prompt and every generated token but the last (not fed back)
        if generated != output_tokens or int(seq) != input_tokens + output_tokens - 1:
            raise RuntimeError(
                f"ran {generated} decode steps over a cache of {int(seq)} tokens; expected "
                f"{output_tokens} steps and {input_tokens + output_tokens - 1} cached tokens"
            )


def _major(version: str) -> int:
    try:
        return int(version.split(".")[0])
    except ValueError:
        return 0


def describe_runner(r: Any) -> dict[str, Any]:
    return {"dtype": r.dtype_name, **r.versions}
