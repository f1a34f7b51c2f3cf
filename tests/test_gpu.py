"""The GPU path: discovery, SAE training, the refusal direction and fine-tuning in bf16 on CUDA.

Skipped without CUDA. On a GPU machine: ``.venv/bin/python -m pytest -q -m gpu`` (or
``benchmarks/gpu_check.sh``, which also runs the speed benchmark with ``--device cuda``).
"""

from __future__ import annotations

import pytest
import torch

# slow too: the fast suite downloads nothing big (SmolLM2), even on a GPU machine
pytestmark = [pytest.mark.gpu, pytest.mark.slow, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")]


@pytest.fixture(scope="module")
def lm():
    from safecircuits.errors import ModelNotAvailableError
    from safecircuits.models import load_model

    try:
        return load_model("smollm2-135m-instruct", device="cuda", dtype="bfloat16", progress=False)
    except ModelNotAvailableError as e:  # offline with no cached wheel: the only reason to skip
        pytest.skip(str(e))


def test_everything_lives_on_the_gpu(lm):
    assert lm.info["device"].startswith("cuda") and lm.info["dtype"] == "bfloat16"
    assert next(lm.model.parameters()).device.type == "cuda"


def test_discovery_masks_on_cuda(lm):
    from safecircuits.circuits.discover import DiscoveryConfig, discover_circuit

    data = lm.profile.objective_data(lm, "safety", "train", n=16)
    val = lm.profile.objective_data(lm, "safety", "val", n=8)
    c = discover_circuit(lm, "safety", data, DiscoveryConfig(max_steps=4, batch_size=4, progress=False, checkpoint_dir=None), val_data=val)
    assert c.heads.shape == (30, 9) and c.neurons.shape == (30, 1536)


def test_sae_training_on_cuda(lm, tmp_path):
    from safecircuits.features import train_sae

    ps = lm.profile.sae_prompts("train", n=16)
    res = train_sae(lm, ps, "blocks.20.hook_resid_post", d_sae=256, k=16, training_tokens=4096, batch_size=256, out_dir=tmp_path / "sae",
                    n_checkpoints=0, progress=False)
    assert res.sae.W_dec.device.type == "cuda" and res.quality["explained_variance"] > 0.0


def test_refusal_direction_on_cuda(lm):
    from safecircuits.subspaces import RefusalConfig, find_refusal_direction

    rd = find_refusal_direction(lm, config=RefusalConfig(n_prompts=8, layers=(10, 15), positions=(-1,), kl_threshold=10.0,
                                                         prune_layer_fraction=0.0))
    assert rd.direction.shape == (576,)


@pytest.mark.parametrize("method,mode", [("sft", None), ("lora", None), ("cwac-weights-only", "lora")])
def test_finetune_steps_on_cuda(lm, method, mode):
    from safecircuits.finetune import FinetuneConfig, finetune, get_method
    from safecircuits.finetune.tasks import get_task

    task = get_task("arithmetic")
    data = task.train_data(lm, 0.1, 16, seed=0)
    arts = {}
    if method.startswith("cwac"):
        g = torch.Generator().manual_seed(0)
        basis, _ = torch.linalg.qr(torch.randn(576, 8, generator=g))
        arts = {"subspace": object(), "activation_subspace": basis}
    run = finetune(lm, data, get_method(method), FinetuneConfig(steps=3, batch_size=4, lr=1e-4, progress=False, mode=mode), artifacts=arts)
    assert next(run.lm.model.parameters()).device.type == "cuda" and len(run.losses) == 3
