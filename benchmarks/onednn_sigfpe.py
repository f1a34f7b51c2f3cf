"""The bf16 CPU matmul that kills a process with SIGFPE, and the unembed that avoids it.

    .venv/bin/python benchmarks/onednn_sigfpe.py --json benchmarks/results/onednn_sigfpe.json

PyTorch 2.13's CPU build multiplies bf16 matrices with oneDNN. On CPUs with AMX (and, seen
earlier, on an AMD Zen 5 with AVX512-BF16) its blocking heuristic divides by zero for
``[32, 49152] @ W.T`` where ``W`` is a contiguous ``[576, 49152]`` weight, i.e. the input gradient
of SmolLM2's unembed over 32 response tokens: the process dies with SIGFPE, which Python cannot
catch. Each case runs in its own subprocess and reports its exit status:

* ``raw_transposed``: the bare product with a transposed right operand, rows 1..80 (and a few
  larger counts): which row counts crash;
* ``raw_contiguous``: the same product with a contiguous right operand (the workaround's path);
* ``unembed_backward``: a backward through the fast unembed of :mod:`safecircuits.models.fastpath`
  (bf16, 32 rows, d_vocab 49152), checked against float32 gradients.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
from pathlib import Path

RAW = """
import sys, torch
m, k, n, tr = map(int, sys.argv[1:5])
b = torch.randn(n, k, dtype=torch.bfloat16).T if tr else torch.randn(k, n, dtype=torch.bfloat16)
torch.mm(torch.randn(m, k, dtype=torch.bfloat16), b)
"""

UNEMBED = """
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig
from safecircuits.models.fastpath import accelerate
cfg = HookedTransformerConfig(n_layers=1, d_model=576, n_ctx=64, d_head=64, n_heads=9, d_vocab=49152, act_fn="silu",
                              normalization_type="RMS", positional_embedding_type="rotary", gated_mlp=True, d_mlp=64)
torch.manual_seed(0)
model = HookedTransformer(cfg)
x32 = torch.randn(1, 32, 576)
w = torch.randn(49152)
def grads(m, dtype):
    x = x32.to(dtype).detach().requires_grad_()
    (m.unembed(x).float() @ w).sum().backward()
    return x.grad.float(), m.unembed.W_U.grad.float()
ref = grads(model, torch.float32)
model.zero_grad()
accelerate(model.to(torch.bfloat16))
got = grads(model, torch.bfloat16)
for r, g in zip(ref, got):
    rel = float((r - g).norm() / r.norm())
    assert rel < 0.02, rel
print("ok")
"""


def _cpu() -> dict[str, object]:
    """The CPU's model name and its bf16 instruction sets (Linux /proc/cpuinfo)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {"model": platform.processor()}
    flags = set(next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), []))
    from safecircuits import runtime

    return {"model": runtime.cpu_name(), "avx512_bf16": "avx512_bf16" in flags, "amx_bf16": "amx_bf16" in flags}


def _run(code: str, *args: str) -> int:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, timeout=600).returncode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path, default=Path("benchmarks/results/onednn_sigfpe.json"))
    args = ap.parse_args()
    import torch

    from safecircuits import runtime
    from safecircuits.io import write_json

    rows = [*range(1, 81), 96, 128, 256, 512]
    res = {"environment": {**runtime.describe(), "machine": platform.platform(), "cpu": _cpu(), "torch": torch.__version__},
           "shape": {"k": 49152, "n": 576},
           "raw_transposed_crash_rows": [m for m in rows if _run(RAW, str(m), "49152", "576", "1") != 0],
           "raw_contiguous_crash_rows": [m for m in rows if _run(RAW, str(m), "49152", "576", "0") != 0],
           "unembed_backward_rc": _run(UNEMBED)}
    print(res)
    write_json(args.json, res)


if __name__ == "__main__":
    main()
