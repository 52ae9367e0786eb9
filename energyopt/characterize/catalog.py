"""Published architecture configurations of the LLMs energyopt can characterize.

Each entry is the model's published Hugging Face ``config.json`` reduced to the fields that set
the shapes (hidden size, layers, heads, KV heads, FFN width, vocabulary, experts). The harness
builds the architecture with random weights: runtime and energy depend on the shapes and the
number of tokens processed, not on the weights' values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import DataError

__all__ = ["ArchSpec", "CATALOG", "get_spec"]


@dataclass(frozen=True)
class ArchSpec:
    name: str
    family: str  # transformers model_type: llama, mistral, mixtral, falcon, qwen2
    config: dict[str, Any]
    source: str  # where the configuration is published
    params_b: float  # parameters [billions], published
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def context_tokens(self) -> int:
        """Published context window [tokens] (Falcon's config names none: 2048)."""
        return int(self.config.get("max_position_embeddings", self.extra.get("context_tokens", 2048)))

    def memory_gb(self, bytes_per_param: float = 2.0) -> float:
        """Weights' memory [GB] at the given precision (bf16: 2 bytes)."""
        return self.params_b * bytes_per_param


_LLAMA2_VOCAB = 32000

CATALOG: dict[str, ArchSpec] = {
    s.name: s
    for s in [
        ArchSpec(
            "llama-2-7b", "llama",
            dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                 num_key_value_heads=32, vocab_size=_LLAMA2_VOCAB, max_position_embeddings=4096,
                 rms_norm_eps=1e-5, rope_theta=10000.0),
            "huggingface.co/meta-llama/Llama-2-7b-hf config.json", 6.74),
        ArchSpec(
            "llama-2-13b", "llama",
            dict(hidden_size=5120, intermediate_size=13824, num_hidden_layers=40, num_attention_heads=40,
                 num_key_value_heads=40, vocab_size=_LLAMA2_VOCAB, max_position_embeddings=4096,
                 rms_norm_eps=1e-5, rope_theta=10000.0),
            "huggingface.co/meta-llama/Llama-2-13b-hf config.json", 13.0),
        ArchSpec(
            "llama-3-8b", "llama",
            dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                 num_key_value_heads=8, vocab_size=128256, max_position_embeddings=8192,
                 rms_norm_eps=1e-5, rope_theta=500000.0),
            "huggingface.co/meta-llama/Meta-Llama-3-8B config.json", 8.03),
        ArchSpec(
            "mistral-7b", "mistral",
            dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                 num_key_value_heads=8, vocab_size=32000, max_position_embeddings=32768,
                 rms_norm_eps=1e-5, rope_theta=10000.0, sliding_window=4096),
            "huggingface.co/mistralai/Mistral-7B-v0.1 config.json", 7.24),
        ArchSpec(
            "mixtral-8x7b", "mixtral",
            dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                 num_key_value_heads=8, vocab_size=32000, max_position_embeddings=32768,
                 rms_norm_eps=1e-5, rope_theta=1e6, num_local_experts=8, num_experts_per_tok=2),
            "huggingface.co/mistralai/Mixtral-8x7B-v0.1 config.json", 46.7),
        ArchSpec(
            "falcon-7b", "falcon",
            dict(hidden_size=4544, num_hidden_layers=32, num_attention_heads=71, multi_query=True,
                 parallel_attn=True, new_decoder_architecture=False, bias=False, alibi=False,
                 vocab_size=65024, layer_norm_epsilon=1e-5),
            "huggingface.co/tiiuae/falcon-7b config.json", 7.22, {"context_tokens": 2048}),
        ArchSpec(
            "tinyllama-1.1b", "llama",
            dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
                 num_key_value_heads=4, vocab_size=32000, max_position_embeddings=2048,
                 rms_norm_eps=1e-5, rope_theta=10000.0),
            "huggingface.co/TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T config.json", 1.1),
        ArchSpec(
            "qwen2.5-0.5b", "qwen2",
            dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768,
                 rms_norm_eps=1e-6, rope_theta=1e6, tie_word_embeddings=True),
            "huggingface.co/Qwen/Qwen2.5-0.5B config.json", 0.49),
        # a tiny architecture for tests and smoke runs (not a published model)
        ArchSpec(
            "tiny-test", "llama",
            dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=256, max_position_embeddings=8192),
            "energyopt test architecture", 0.0002),
    ]
}


def get_spec(name: str) -> ArchSpec:
    key = name.strip().lower()
    if key not in CATALOG:
        raise DataError(f"unknown LLM {name!r}; the catalog has: {', '.join(sorted(CATALOG))} (or pass --model-dir)")
    return CATALOG[key]
