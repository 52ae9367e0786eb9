"""Decode attention over ragged rows: each row of a batch attends to its own number of cached tokens.

A serving engine's decode step reads, for every running query, only the tokens that query has
(paged attention); padding every row to the longest one would read the batch's longest context
``batch`` times over, which for lognormal prompt lengths is several times the real work. Two
implementations with one contract:

* :func:`ragged_decode_reference` (torch, any device): masks the cache beyond each row's length;
  its cost is that of the whole cache. The replay uses it on a CPU, and tests hold the kernel to it.
* :func:`ragged_decode_triton` (a Triton kernel, CUDA): one program per (row, KV head, split of the
  row's tokens) reads each KV head once for every query head that shares it and stops at the
  row's length; a second kernel combines the splits as flash-decoding does (running max and sum
  per split): two launches per layer, which matters inside a decode step of a few milliseconds.

``query`` [b, heads, dim]; ``k_cache``/``v_cache`` [b, kv_heads, capacity, dim]; ``lengths`` [b]
(int, tokens cached per row, at least 1 is read); returns [b, heads, dim]. Query head ``h`` uses
KV head ``h // (heads // kv_heads)``, as transformers' ``repeat_kv`` does. Nothing here syncs the
host with the device, so a step can be captured in a CUDA graph.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["ragged_decode_reference", "ragged_decode_triton", "splits_for", "triton_available"]

BLOCK_N = 64
TARGET_PROGRAMS = 528  # about four waves on an H100/H200 (132 multiprocessors)
MAX_SPLITS = 16


def splits_for(batch_size: int, kv_heads: int, capacity: int) -> int:
    """Splits of each row's tokens, so that rows × KV heads × splits fills the device."""
    want = math.ceil(TARGET_PROGRAMS / max(1, batch_size * kv_heads))
    return max(1, min(MAX_SPLITS, want, math.ceil(capacity / BLOCK_N)))


def ragged_decode_reference(query: Any, k_cache: Any, v_cache: Any, lengths: Any, scale: float) -> Any:
    import torch

    b, heads, dim = query.shape
    kv_heads, cap = k_cache.shape[1], k_cache.shape[2]
    group = heads // kv_heads
    q = query.reshape(b, kv_heads, group, dim)
    scores = torch.matmul(q, k_cache.transpose(-1, -2)).float() * scale  # [b, kv_heads, group, cap]
    valid = torch.arange(cap, device=query.device)[None, :] < lengths.clamp(min=1)[:, None]  # [b, cap]
    scores = scores.masked_fill(~valid[:, None, None, :], float("-inf"))
    probs = torch.softmax(scores, dim=-1).to(v_cache.dtype)
    return torch.matmul(probs, v_cache).reshape(b, heads, dim)


def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


_KERNEL: Any = None


def _kernel() -> Any:
    global _KERNEL
    if _KERNEL is not None:
        return _KERNEL
    import triton
    import triton.language as tl

    @triton.jit
    def _split_kernel(Q, K, V, L, Acc, M, S, scale,
                      sqb, sqh, skb, skh, skn, svb, svh, svn, sab, sah, sas, smb, smh,
                      GROUP: tl.constexpr, GROUP_P: tl.constexpr, D: tl.constexpr, BLOCK: tl.constexpr,
                      SPLITS: tl.constexpr):
        row = tl.program_id(0)
        kvh = tl.program_id(1)
        split = tl.program_id(2)
        length = tl.maximum(tl.load(L + row).to(tl.int32), 1)
        per = tl.cdiv(tl.cdiv(length, SPLITS), BLOCK) * BLOCK
        lo = split * per
        hi = tl.minimum(lo + per, length)
        offs_g = tl.arange(0, GROUP_P)
        offs_d = tl.arange(0, D)
        gmask = offs_g < GROUP
        heads = kvh * GROUP + offs_g
        q = tl.load(Q + row * sqb + heads[:, None] * sqh + offs_d[None, :], mask=gmask[:, None], other=0.0)
        m = tl.full([GROUP_P], float("-inf"), tl.float32)
        s = tl.zeros([GROUP_P], tl.float32)
        acc = tl.zeros([GROUP_P, D], tl.float32)
        n0 = lo
        while n0 < hi:  # (a while loop: the bounds are loaded, and Triton's interpreter indexes no tensor range)
            offs_n = n0 + tl.arange(0, BLOCK)
            nmask = offs_n < hi
            k = tl.load(K + row * skb + kvh * skh + offs_n[:, None] * skn + offs_d[None, :], mask=nmask[:, None], other=0.0)
            v = tl.load(V + row * svb + kvh * svh + offs_n[:, None] * svn + offs_d[None, :], mask=nmask[:, None], other=0.0)
            sc = tl.dot(q, tl.trans(k)).to(tl.float32) * scale
            sc = tl.where(nmask[None, :], sc, float("-inf"))
            m_new = tl.maximum(m, tl.max(sc, 1))
            alpha = tl.exp(m - m_new)
            p = tl.exp(sc - m_new[:, None])
            s = s * alpha + tl.sum(p, 1)
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v).to(tl.float32)
            m = m_new
            n0 += BLOCK
        out_off = row * sab + heads[:, None] * sah + split * sas + offs_d[None, :]
        tl.store(Acc + out_off, acc, mask=gmask[:, None])
        tl.store(M + row * smb + heads * smh + split, m, mask=gmask)
        tl.store(S + row * smb + heads * smh + split, s, mask=gmask)

    @triton.jit
    def _combine_kernel(Acc, M, S, Out, sab, sah, sas, smb, smh, sob, soh,
                        D: tl.constexpr, SPLITS: tl.constexpr, SPLITS_P: tl.constexpr):
        row = tl.program_id(0)
        head = tl.program_id(1)
        offs_s = tl.arange(0, SPLITS_P)
        offs_d = tl.arange(0, D)
        smask = offs_s < SPLITS
        m = tl.load(M + row * smb + head * smh + offs_s, mask=smask, other=float("-inf"))
        s = tl.load(S + row * smb + head * smh + offs_s, mask=smask, other=0.0)
        top = tl.max(m, 0)
        w = tl.where(smask & (m > float("-inf")), tl.exp(m - top), 0.0)
        acc = tl.load(Acc + row * sab + head * sah + offs_s[:, None] * sas + offs_d[None, :], mask=smask[:, None],
                      other=0.0)
        out = tl.sum(acc * w[:, None], 0) / tl.sum(s * w, 0)
        tl.store(Out + row * sob + head * soh + offs_d, out.to(Out.dtype.element_ty))

    _KERNEL = (_split_kernel, _combine_kernel)
    return _KERNEL


def ragged_decode_triton(query: Any, k_cache: Any, v_cache: Any, lengths: Any, scale: float,
                         splits: int | None = None) -> Any:
    import torch

    b, heads, dim = query.shape
    kv_heads, cap = k_cache.shape[1], k_cache.shape[2]
    group = heads // kv_heads
    if dim & (dim - 1) or dim < 16:
        raise ValueError(f"head dim {dim} is not a power of two >= 16")
    n_split = splits or splits_for(b, kv_heads, cap)
    q = query.contiguous()
    acc = torch.empty((b, heads, n_split, dim), dtype=torch.float32, device=query.device)
    m = torch.empty((b, heads, n_split), dtype=torch.float32, device=query.device)
    s = torch.empty((b, heads, n_split), dtype=torch.float32, device=query.device)
    split_kernel, combine_kernel = _kernel()
    split_kernel[(b, kv_heads, n_split)](
        q, k_cache, v_cache, lengths, acc, m, s, float(scale),
        q.stride(0), q.stride(1), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2), acc.stride(0), acc.stride(1), acc.stride(2),
        m.stride(0), m.stride(1),
        GROUP=group, GROUP_P=max(16, 1 << (group - 1).bit_length()), D=dim, BLOCK=BLOCK_N, SPLITS=n_split,
    )
    out = torch.empty_like(q)
    combine_kernel[(b, heads)](acc, m, s, out, acc.stride(0), acc.stride(1), acc.stride(2), m.stride(0), m.stride(1),
                               out.stride(0), out.stride(1), D=dim, SPLITS=n_split,
                               SPLITS_P=max(2, 1 << (n_split - 1).bit_length()))
    return out
