"""load_transformer_lens: offline only, clear errors when the weights are not cached (no network)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from safecircuits.data.chat import TemplateChat
from safecircuits.models.hub import (
    ModelNotAvailableError,
    cached_snapshot,
    hf_hub_cache_dir,
    load_transformer_lens,
    repo_cache_path,
)


@pytest.fixture
def empty_hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "hf_home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    return home / "hub"


def test_cache_dir_follows_environment(empty_hf_cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert hf_hub_cache_dir() == empty_hf_cache
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    assert hf_hub_cache_dir() == tmp_path / "elsewhere"


def test_known_name_missing_from_cache(empty_hf_cache: Path) -> None:
    with pytest.raises(ModelNotAvailableError) as exc:
        load_transformer_lens("gpt2")
    msg = str(exc.value)
    assert "not available offline" in msg
    assert str(repo_cache_path("gpt2", empty_hf_cache)) in msg
    assert "huggingface-cli download gpt2" in msg and "How to provide them" in msg
    assert isinstance(exc.value, RuntimeError)


def test_chat_model_missing_from_cache(empty_hf_cache: Path) -> None:
    with pytest.raises(ModelNotAvailableError, match="not available offline") as exc:
        load_transformer_lens("Qwen/Qwen2.5-0.5B-Instruct")
    assert "models--Qwen--Qwen2.5-0.5B-Instruct" in str(exc.value)


def test_unknown_name(empty_hf_cache: Path) -> None:
    """A made-up name lists what loads offline; there is nothing to download, so no download advice."""
    with pytest.raises(ModelNotAvailableError) as exc:
        load_transformer_lens("acme/definitely-not-a-model-7b")
    msg = str(exc.value)
    assert "not available offline" in msg
    assert "TransformerLens-supported model name" in msg
    assert "organism:aligned" in msg and "smollm2-135m-instruct" in msg and "directory written by safecircuits" in msg
    assert "How to provide them" not in msg and "huggingface-cli download" not in msg


def test_unknown_name_suggests_close_match(empty_hf_cache: Path) -> None:
    with pytest.raises(ModelNotAvailableError, match="Did you mean"):
        load_transformer_lens("gpt2-mediun")


def test_local_dir_without_config(empty_hf_cache: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelNotAvailableError, match="not available offline"):
        load_transformer_lens("gpt2", local_dir=tmp_path)


# ---------------------------------------------------------- success path with a tiny fake "gpt2"


def _tiny_gpt2_checkpoint(folder: Path) -> None:
    """A 2-layer random GPT-2 with a small byte-level BPE tokenizer, as save_pretrained writes it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["how do i bake the bread ?", "sure . first mix flour , then heat oven ."] * 20, trainer)
    hf_tok = GPT2TokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                               unk_token="<|endoftext|>")
    hf_tok.save_pretrained(str(folder))
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(hf_tok), n_positions=64, n_ctx=64, n_embd=32, n_layer=2, n_head=2)  # n_ctx: as in gpt2's config.json
    GPT2LMHeadModel(cfg).save_pretrained(str(folder))


@pytest.fixture
def tiny_gpt2_cache(empty_hf_cache: Path) -> Path:
    repo = repo_cache_path("gpt2", empty_hf_cache)
    snap = repo / "snapshots" / "0123456789abcdef"
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123456789abcdef")
    _tiny_gpt2_checkpoint(snap)
    return snap


def test_loads_from_cache_offline(tiny_gpt2_cache: Path) -> None:
    from huggingface_hub import constants

    offline_before = (os.environ.get("HF_HUB_OFFLINE"), constants.HF_HUB_OFFLINE, constants.HF_HUB_CACHE)
    assert cached_snapshot("gpt2") == tiny_gpt2_cache
    lm = load_transformer_lens("gpt2")
    # the hub's offline switch and cache folder are restored afterwards
    assert (os.environ.get("HF_HUB_OFFLINE"), constants.HF_HUB_OFFLINE, constants.HF_HUB_CACHE) == offline_before
    assert lm.model.cfg.n_layers == 2 and lm.model.cfg.d_model == 32
    assert lm.info["source"] == "hf-cache" and lm.info["hf_repo"] == "gpt2"
    assert not lm.model.training
    # no chat template in this tokenizer: the plain fallback
    assert isinstance(lm.chat, TemplateChat) and lm.chat.name == "plain"
    assert lm.chat.prompt_text("hi") == "User: hi\nAssistant:"
    assert lm.chat.eos_token == "<|endoftext|>"
    tokens = torch.tensor([lm.chat.prompt_ids("how do i bake the bread ?")])
    logits = lm.model(tokens)
    assert logits.shape == (1, tokens.shape[1], lm.model.cfg.d_vocab_out)


def test_loads_from_local_dir(empty_hf_cache: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    _tiny_gpt2_checkpoint(ckpt)
    lm = load_transformer_lens("gpt2", local_dir=ckpt, fold_ln=False)
    assert lm.model.cfg.n_layers == 2
    assert lm.info["source"].startswith("local:")
    assert not repo_cache_path("gpt2", empty_hf_cache).exists()  # nothing written into the cache


def test_incomplete_cache_entry(empty_hf_cache: Path) -> None:
    """A snapshot with a config and weights but no tokenizer files fails offline, not via the network."""
    repo = repo_cache_path("gpt2", empty_hf_cache)
    snap = repo / "snapshots" / "abc"
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc")
    _tiny_gpt2_checkpoint(snap)
    for f in snap.iterdir():
        if f.name.startswith(("tokenizer", "vocab", "merges", "special_tokens")):
            f.unlink()
    with pytest.raises(ModelNotAvailableError, match="not available offline"):
        load_transformer_lens("gpt2")
