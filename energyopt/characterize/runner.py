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
                 dtype: str = "bf16", seed: int = 0, threads: int | None = None):
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

    def parameters_b(self) -> float:
        return sum(p.numel() for p in self.model.parameters()) / 1e9

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    def run(self, input_tokens: int, output_tokens: int) -> None:
        """Prefill ``input_tokens`` random tokens, then decode exactly ``output_tokens`` tokens."""
        torch = self.torch
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
