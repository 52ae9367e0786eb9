"""Decode attention over ragged rows on a GPU: the Triton kernel against the padded torch reference.

For batches of rows with lognormal lengths (median about 1,100 tokens, as a chat trace's prompts
plus outputs), prints the largest difference between the two (bf16) and the device time of each
per call (calls replayed from a CUDA graph, timed with CUDA events), side by side: the kernel
reads each row's own tokens, the reference the whole cache.

Needs a CUDA GPU and Triton.

Run: python benchmarks/replay_attention.py
"""

import torch

from energyopt.characterize.attention import ragged_decode_reference, ragged_decode_triton


def bench(fn, reps: int = 50) -> float:
    """Milliseconds per call on the device: ``reps`` calls captured in one CUDA graph and replayed
    (as the replay's decode step runs them), so that the host's launch time drops out."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(reps):
            fn()
    graph.replay()
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    graph.replay()
    b.record()
    torch.cuda.synchronize()
    return a.elapsed_time(b) / reps


def main() -> None:
    g = torch.Generator().manual_seed(0)
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}")
    print("model         batch heads kv_heads dim capacity mean_len max_abs_diff triton_ms reference_ms")
    for name, b, heads, kvh, d in [("llama-3-8b", 32, 32, 8, 128), ("llama-3-8b", 8, 32, 8, 128),
                                   ("llama-3-8b", 1, 32, 8, 128), ("qwen2.5-0.5b", 32, 14, 2, 64)]:
        lengths = torch.clamp(torch.exp(torch.randn(b, generator=g) * 0.9 + 7.0), 8, 4096).long()
        cap = int((lengths.max() + 63) // 64 * 64)
        q = torch.randn(b, heads, d, device="cuda", dtype=torch.bfloat16)
        k = torch.randn(b, kvh, cap, d, device="cuda", dtype=torch.bfloat16)
        v = torch.randn(b, kvh, cap, d, device="cuda", dtype=torch.bfloat16)
        ln = lengths.cuda()
        ref = ragged_decode_reference(q, k, v, ln, d ** -0.5)
        out = ragged_decode_triton(q, k, v, ln, d ** -0.5)
        diff = float((out.float() - ref.float()).abs().max())
        args = (q, k, v, ln, d ** -0.5)
        t_tri = bench(lambda a=args: ragged_decode_triton(*a))
        t_ref = bench(lambda a=args: ragged_decode_reference(*a))
        print(f"{name:13s} {b:5d} {heads:5d} {kvh:8d} {d:3d} {cap:8d} {float(lengths.float().mean()):8.0f} "
              f"{diff:12.2e} {t_tri:9.3f} {t_ref:12.3f}")


if __name__ == "__main__":
    main()
