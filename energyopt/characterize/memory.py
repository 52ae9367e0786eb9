"""Device memory of a batched run: does the KV cache of b queries fit beside the weights?

A batch of b queries of ``input_tokens + output_tokens`` tokens keeps, in every layer, a key and a
value vector per KV head for every token of every query: layers × KV heads × head dim × 2 × bytes
× b × tokens. The harness's CUDA-graph decode allocates the cache for a whole length bucket, so the
tokens counted are the bucket's where graphs are used. A point is measured only where that cache
plus the weights fit in the device's memory less a reserve for activations, captured graphs and
the allocator (``reserve_fraction``). Pure arithmetic: tested without a GPU.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .design import DesignPoint

__all__ = [
    "RESERVE_FRACTION",
    "KVShape",
    "kv_shape",
    "kv_cache_bytes",
    "cache_tokens",
    "memory_fit",
    "split_by_memory",
]

RESERVE_FRACTION = 0.10  # of device memory, kept free for activations, graph pools and fragmentation


@dataclass(frozen=True)
class KVShape:
    """What one cached token costs: ``layers × kv_heads × head_dim × 2 (K and V) × bytes_per_value``."""

    layers: int
    kv_heads: int
    head_dim: int
    bytes_per_value: int = 2

    @property
    def bytes_per_token(self) -> int:
        return self.layers * self.kv_heads * self.head_dim * 2 * self.bytes_per_value


def kv_shape(config: Mapping[str, Any], bytes_per_value: int = 2) -> KVShape:
    """The KV shape of a Hugging Face style configuration (a catalog spec's ``config`` or a model's).

    KV heads: ``num_key_value_heads`` (grouped-query attention), else ``num_kv_heads``, else one for
    multi-query models (Falcon's ``multi_query``), else one per attention head. Head dim:
    ``head_dim`` where given, else ``hidden_size // num_attention_heads``.
    """
    heads = int(config["num_attention_heads"])
    kv = config.get("num_key_value_heads") or config.get("num_kv_heads")
    if not kv:
        kv = 1 if config.get("multi_query") and not config.get("new_decoder_architecture") else heads
    head_dim = config.get("head_dim") or int(config["hidden_size"]) // heads
    return KVShape(int(config["num_hidden_layers"]), int(kv), int(head_dim), int(bytes_per_value))


def kv_cache_bytes(shape: KVShape, batch_size: int, tokens: int) -> int:
    """KV cache of ``batch_size`` queries of ``tokens`` cached tokens each [bytes]."""
    return shape.bytes_per_token * int(batch_size) * int(tokens)


def cache_tokens(input_tokens: int, output_tokens: int, bucket_tokens: int | None) -> int:
    """Tokens a query's cache holds: its whole context, rounded up to the bucket where there is one."""
    total = int(input_tokens) + int(output_tokens)
    if not bucket_tokens:
        return total
    return -(-total // bucket_tokens) * bucket_tokens


def memory_fit(kv_bytes: int, weight_bytes: int, memory_bytes: int,
               reserve_fraction: float = RESERVE_FRACTION) -> bool:
    """Whether a KV cache fits beside the weights in ``(1 - reserve_fraction)`` of the memory."""
    return kv_bytes + weight_bytes <= (1.0 - reserve_fraction) * memory_bytes


def split_by_memory(points: Iterable[DesignPoint], shape: KVShape, weight_bytes: int, memory_bytes: int,
                    bucket_for_batch: Any = None, reserve_fraction: float = RESERVE_FRACTION,
                    ) -> tuple[list[DesignPoint], list[tuple[DesignPoint, int]]]:
    """Points that fit in memory, and those that do not with their KV cache [bytes].

    ``bucket_for_batch(batch_size)`` gives the cache's length bucket [tokens] (``None``: no bucket,
    the cache holds exactly the context).
    """
    kept: list[DesignPoint] = []
    skipped: list[tuple[DesignPoint, int]] = []
    for p in points:
        bucket = bucket_for_batch(p.batch_size) if bucket_for_batch is not None else None
        kv = kv_cache_bytes(shape, p.batch_size, cache_tokens(p.input_tokens, p.output_tokens, bucket))
        if memory_fit(kv, weight_bytes, memory_bytes, reserve_fraction):
            kept.append(p)
        else:
            skipped.append((p, kv))
    return kept, skipped
