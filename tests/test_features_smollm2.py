"""An SAE on the real model, end to end: train on a middle-layer residual hook from synthetic
prompts, save, reload with SAELens, rank features. Slow (about 1-3 minutes on CPU)."""

import pytest
import torch
from sae_lens import SAE

from safecircuits.data.loaders import load_prompts
from safecircuits.errors import ModelNotAvailableError
from safecircuits.features import FeatureSet, rank_features, splice_sae, train_sae
from safecircuits.models import load_model

pytestmark = [pytest.mark.slow, pytest.mark.network]


def test_sae_on_smollm2(tmp_path):
    try:
        lm = load_model("smollm2-135m-instruct", progress=False)
    except ModelNotAvailableError as e:  # offline and no cached wheel
        pytest.skip(str(e))
    hook = f"blocks.{lm.model.cfg.n_layers // 2}.hook_resid_pre"
    harmful = load_prompts("synthetic:harmful:64", seed=0)
    harmless = load_prompts("synthetic:harmless:64", seed=0)
    ps = (harmful + harmless).shuffle(0)
    out = tmp_path / "smol_sae"
    res = train_sae(lm, ps, hook, arch="topk", d_sae=1024, k=32, training_tokens=20_000, batch_size=256, lr=1e-3,
                    out_dir=out, n_checkpoints=1, progress=False)
    q = res.quality
    print('smollm2 SAE quality', q)
    assert q["l0"] <= 32 + 1e-6
    assert q["explained_variance"] > 0.3, q  # 20k tokens is a tiny budget; an untrained SAE is far below
    assert q["ce_sae"] < q["ce_zero_ablation"]
    loaded = SAE.load_from_disk(str(out))
    x = torch.randn(8, lm.model.cfg.d_model)
    torch.testing.assert_close(loaded.encode(x), res.sae.encode(x), rtol=0, atol=0)
    assert loaded.cfg.metadata.model_name == "smollm2-135m-instruct" and loaded.cfg.metadata.hook_name == hook
    assert len(list((out / "checkpoints").iterdir())) == 1

    fset = rank_features(lm, loaded, harmful[:32] + harmless[:32], method="diff", sae_path=out)
    back = FeatureSet.load(fset.save(tmp_path / "f.json"))
    assert back.top(10) == fset.top(10) and back.d_sae == 1024
    top = fset.top(5)
    assert (fset.stats["mean_post_harmful"][top] > fset.stats["mean_post_harmless"][top]).all()
    # splicing with nothing edited is exact on the real model too
    toks = lm.tokenizer(["How do I bake bread?"], return_tensors="pt")["input_ids"]
    clean = lm.model(toks)
    with splice_sae(lm.model, loaded, hook):
        assert torch.equal(lm.model(toks), clean)
