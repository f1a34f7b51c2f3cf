"""The fine-tuning loop and LoRA: masks, update transforms, resume, LoRA equivalences, save/load (mechanics on a
random-weight organism-shaped model; that training learns, on the trained organism, is slow)."""

from __future__ import annotations

import pytest
import torch

from safecircuits.errors import ModelNotAvailableError
from safecircuits.finetune import (
    FinetuneConfig,
    FinetuneRun,
    Method,
    add_lora,
    finetune,
    get_method,
    lora_deltas,
    merge_lora,
)
from safecircuits.finetune.loop import batch_indices, copy_loaded
from safecircuits.models import load_model
from safecircuits.models.language import Language

TOKENS = torch.tensor([[2, 4, 10, 11, 12, 13, 5, 20, 21]])


@pytest.fixture(scope="module")
def data():
    lang = Language(0)
    return lang.prompt_set("train", "harmless") + lang.prompt_set("train", "harmful", response="comply")


def cfg(**kw):
    base = {"steps": 6, "batch_size": 8, "lr": 3e-3, "progress": False}
    base.update(kw)
    return FinetuneConfig(**base)


def params(lm):
    return {n: p.detach().clone() for n, p in lm.model.named_parameters()}


class MaskFirstRows(Method):
    """Trains only row 0 of each W_in (a gradient mask) and the whole unembedding bias."""

    name = "mask-test"

    def trainable(self, ctx):
        out = {}
        for n, p in ctx.lm.model.named_parameters():
            if n.endswith("mlp.W_in"):
                m = torch.zeros_like(p)
                m[0] = 1
                out[n] = m
        out["unembed.b_U"] = None
        return out


class ZeroUpdates(Method):
    name = "zero-updates"

    def transform_update(self, ctx, name, delta):
        return torch.zeros_like(delta)


class HalveUpdates(Method):
    name = "halve-updates"

    def transform_update(self, ctx, name, delta):
        ctx.state.setdefault("seen", set()).add(name)
        return 0.5 * delta


def test_config_validation():
    with pytest.raises(ValueError, match="steps"):
        FinetuneConfig(steps=0)
    with pytest.raises(ValueError, match="lora_targets"):
        FinetuneConfig(lora_targets=("W_X",))
    with pytest.raises((ValueError, TypeError), match="mode"):  # TypeError: the runtime type checker in tests
        FinetuneConfig(mode="half")
    with pytest.raises(ValueError, match="warmup"):
        FinetuneConfig(steps=5, warmup=5)


def test_sft_changes_copy_not_caller(random_aligned, data):
    before = params(random_aligned)
    run = finetune(random_aligned, data, get_method("sft"), cfg())
    after_caller = params(random_aligned)
    assert all(torch.equal(before[n], after_caller[n]) for n in before), "finetune mutated the caller's model"
    changed = params(run.lm)
    assert not torch.equal(changed["blocks.0.attn.W_Q"], before["blocks.0.attn.W_Q"])
    assert run.trainable_share == 1.0
    assert len(run.losses) == 6 and all({"total", "ce", "lr"} <= set(r) for r in run.losses)
    p = run.provenance
    assert p["data"]["hash"] == data.content_hash and p["seed"] == 0 and p["method"]["method"] == "sft"
    assert p["base_model"] == random_aligned.name


@pytest.mark.slow
def test_loss_decreases_on_response_tokens(tiny_aligned, data):
    run = finetune(tiny_aligned, data.filter(label="harmful"), get_method("sft"), cfg(steps=30, lr=3e-3))
    first = sum(r["ce"] for r in run.losses[:3]) / 3
    last = sum(r["ce"] for r in run.losses[-3:]) / 3
    assert last < 0.5 * first  # the aligned organism refuses; learning to comply lowers the CE a lot


def test_caller_rng_untouched(random_aligned, data):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    finetune(random_aligned, data, get_method("lora"), cfg(steps=1))
    assert torch.equal(torch.rand(3), expected)


def test_deterministic_for_seed(random_aligned, data):
    a = params(finetune(random_aligned, data, get_method("sft"), cfg()).lm)
    b = params(finetune(random_aligned, data, get_method("sft"), cfg()).lm)
    c = params(finetune(random_aligned, data, get_method("sft"), cfg(seed=1)).lm)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not all(torch.equal(a[n], c[n]) for n in a)


def test_gradient_mask_is_bitwise_with_weight_decay(random_aligned, data):
    before = params(random_aligned)
    run = finetune(random_aligned, data, MaskFirstRows(), cfg(weight_decay=0.5))
    after = params(run.lm)
    for n in before:
        if n.endswith("mlp.W_in"):
            assert torch.equal(after[n][1:], before[n][1:]), f"{n}: a masked entry moved"
            assert not torch.equal(after[n][0], before[n][0]), f"{n}: the trainable row did not train"
        elif n == "unembed.b_U":
            assert not torch.equal(after[n], before[n])
        else:
            assert torch.equal(after[n], before[n]), f"{n}: untrainable parameter moved"
    d_model = random_aligned.model.cfg.d_model
    n_layers = random_aligned.model.cfg.n_layers
    expected = n_layers * random_aligned.model.cfg.d_mlp + random_aligned.model.cfg.d_vocab
    assert run.provenance["trainable_params"] == expected
    assert run.trainable_share == pytest.approx(expected / sum(p.numel() for p in random_aligned.model.parameters()))
    assert d_model > 1


def test_update_transform_applied(random_aligned, data):
    before = params(random_aligned)
    run = finetune(random_aligned, data, ZeroUpdates(), cfg(weight_decay=0.1))
    after = params(run.lm)
    assert all(torch.equal(before[n], after[n]) for n in before), "a zeroing transform must leave the model unchanged"
    half = HalveUpdates()
    run_h = finetune(random_aligned, data, half, cfg(steps=1))
    run_f = finetune(random_aligned, data, get_method("sft"), cfg(steps=1))
    n = "blocks.1.mlp.W_out"
    d_h = params(run_h.lm)[n] - before[n]
    d_f = params(run_f.lm)[n] - before[n]
    assert torch.allclose(d_h, 0.5 * d_f, atol=1e-7) and d_f.abs().max() > 1e-5


def test_missing_artifact_names_it(random_aligned, data):
    with pytest.raises(ValueError, match="circuit.*safecircuits discover"):
        finetune(random_aligned, data, get_method("sct-tune"), cfg())


def test_unknown_method_lists_names():
    with pytest.raises(ValueError, match="sft.*|lora"):
        get_method("nope")


def test_batch_indices_cover_epochs():
    seen = sum((batch_indices(10, 4, 0, s) for s in range(5)), [])
    assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:20]) == list(range(10))


class Crash(Method):
    """sft that raises at a given step (simulates an interrupted job); `crash_at` is not a hyperparameter."""

    name = "sft"

    def __init__(self, crash_at=None):
        super().__init__()
        self.crash_at = crash_at

    def extra_loss(self, ctx, step, batch, logits):
        if self.crash_at is not None and step == self.crash_at:
            raise KeyboardInterrupt("simulated interruption")
        return {}


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_checkpoint_resume_is_exact(random_aligned, data, tmp_path, mode):
    c = cfg(steps=10, checkpoint_every=3, weight_decay=0.01, warmup=2, mode=mode)
    full = params(finetune(random_aligned, data, Crash(), c).lm)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        finetune(random_aligned, data, Crash(crash_at=7), c, out_dir=out)
    assert (out / "checkpoint.pt").exists()
    if mode == "full":  # loading the unfinished directory names the problem and the fix
        from safecircuits.errors import MissingFileError
        from safecircuits.models import load_model

        with pytest.raises(MissingFileError, match="unfinished run.*same --out"):
            load_model(str(out))
    run = finetune(random_aligned, data, Crash(), c, out_dir=out)
    assert run.provenance["resumed_from"] == 7  # the interrupt saved the 7 finished steps (the last periodic checkpoint was at 6)
    resumed = params(run.lm)
    assert all(torch.equal(full[n], resumed[n]) for n in full), "resumed run differs from the uninterrupted one"
    assert [r["total"] for r in run.losses] == pytest.approx([r["total"] for r in finetune(random_aligned, data, Crash(), c).losses])
    assert not (out / "checkpoint.pt").exists() and (out / "model.safetensors").exists()


def test_checkpoint_of_other_run_is_refused(random_aligned, data, tmp_path):
    c = cfg(steps=6, checkpoint_every=2)
    with pytest.raises(KeyboardInterrupt):
        finetune(random_aligned, data, Crash(crash_at=3), c, out_dir=tmp_path)
    with pytest.raises(ValueError, match="different run"):
        finetune(random_aligned, data, Crash(), cfg(steps=6, checkpoint_every=2, lr=1e-4), out_dir=tmp_path)


# -- LoRA ---------------------------------------------------------------------------------------

def test_zero_b_lora_equals_base_and_merge_matches(random_aligned):
    lm = copy_loaded(random_aligned)
    ref = random_aligned.model(TOKENS)
    names = add_lora(lm.model, rank=4, alpha=8.0, seed=0)
    assert len(names) == 2 * 6  # W_Q W_K W_V W_O W_in W_out per layer (no W_gate)
    assert torch.equal(lm.model(TOKENS), ref)
    with torch.no_grad():
        for n, p in lm.model.named_parameters():
            if n.endswith(".B"):
                p.normal_(0, 0.05)
    param_out = lm.model(TOKENS)
    assert (param_out - ref).abs().max() > 1e-3
    deltas = lora_deltas(lm.model)
    assert set(deltas) == set(names) and deltas["blocks.0.attn.W_Q"].shape == (4, 32, 8)
    merge_lora(lm.model)
    assert not any(".parametrizations." in n for n, _ in lm.model.named_parameters())
    assert torch.allclose(lm.model(TOKENS), param_out, atol=1e-5)
    w0 = dict(random_aligned.model.named_parameters())["blocks.1.mlp.W_out"]
    assert torch.allclose(dict(lm.model.named_parameters())["blocks.1.mlp.W_out"], w0 + deltas["blocks.1.mlp.W_out"], atol=1e-6)


def test_lora_trains_only_factors(random_aligned, data):
    before = params(random_aligned)
    run = finetune(random_aligned, data, get_method("lora"), cfg(lora_targets=("W_Q", "W_V", "W_in")))
    after = params(run.lm)
    assert set(after) == set(before), "saved LoRA models must be plain (merged) HookedTransformers"
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed == {f"blocks.{l}.{w}" for l in range(2) for w in ("attn.W_Q", "attn.W_V", "mlp.W_in")}
    r = 8
    # W_Q / W_V: A [r, d_model] + B [n_heads*d_head, r]; W_in: A [r, d_model] + B [d_mlp, r]
    per_layer = 2 * (r * 32 + 32 * r) + (r * 32 + 128 * r)
    assert run.provenance["trainable_params"] == 2 * per_layer
    assert run.provenance["mode"] == "lora"
    # the update is low rank
    d = after["blocks.0.mlp.W_in"] - before["blocks.0.mlp.W_in"]
    assert torch.linalg.matrix_rank(d).item() <= r


class Scaled(Method):
    """LoRA with a post-hoc hook that drops every update (tests that post_hoc deltas are what is merged)."""

    name = "posthoc-zero"
    mode = "lora"

    def post_hoc(self, ctx, deltas):
        return {n: torch.zeros_like(d) for n, d in deltas.items()}


def test_post_hoc_deltas_are_merged(random_aligned, data):
    before = params(random_aligned)
    run = finetune(random_aligned, data, Scaled(), cfg())
    after = params(run.lm)
    assert all(torch.equal(before[n], after[n]) for n in before)
    assert run.provenance["post_hoc"] is True


def test_save_load_round_trip(random_aligned, data, tmp_path):
    run = finetune(random_aligned, data, get_method("sft"), cfg(steps=3))
    run.save(tmp_path / "ft")
    lm2 = load_model(str(tmp_path / "ft"))
    assert torch.equal(lm2.model(TOKENS), run.lm.model(TOKENS))
    assert not torch.equal(lm2.model(TOKENS), random_aligned.model(TOKENS))
    assert lm2.info["organism"] == random_aligned.info["organism"], "organism section lost: organism prompts/judges would not apply"
    assert lm2.chat.prompt_text("x") == random_aligned.chat.prompt_text("x")
    assert lm2.tokenizer.get_vocab() == random_aligned.tokenizer.get_vocab()
    run2 = FinetuneRun.load(tmp_path / "ft")
    assert run2.provenance["data"]["hash"] == data.content_hash
    assert run2.provenance["trainable_share"] == 1.0


@pytest.mark.slow
@pytest.mark.network
def test_lora_and_sct_on_smollm2_gqa(tmp_path):
    """The real model (GQA, gated MLP): LoRA on _W_K/_W_V/W_gate, merge, save -> load_model round trip; sct-tune masks."""
    from safecircuits.circuits.circuit import Circuit
    from safecircuits.data.synthetic import synthetic_compliances

    try:
        lm = load_model("smollm2-135m-instruct", progress=False)
    except ModelNotAvailableError as e:  # offline and no cached wheel
        pytest.skip(str(e))
    data = synthetic_compliances(4, seed=0)
    c = FinetuneConfig(steps=2, batch_size=2, lr=1e-3, progress=False, lora_rank=2, lora_targets=("W_K", "W_V", "W_gate"))
    before = {n: p.detach().clone() for n, p in lm.model.named_parameters() if n.startswith("blocks.3.")}
    run = finetune(lm, data, get_method("lora"), c)
    after = dict(run.lm.model.named_parameters())
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed == {"blocks.3.attn._W_K", "blocks.3.attn._W_V", "blocks.3.mlp.W_gate"}
    run.save(tmp_path / "ft")
    lm2 = load_model(str(tmp_path / "ft"))
    toks = torch.tensor([[1, 2, 3, 4, 5]])
    assert torch.allclose(lm2.model(toks), run.lm.model(toks), atol=1e-4)

    cfg_ = lm.model.cfg
    heads = torch.zeros(cfg_.n_layers, cfg_.n_heads, dtype=torch.bool)
    heads[3, 4] = True  # kv head 4 // 3 = 1
    circuit = Circuit(heads, torch.zeros(cfg_.n_layers, cfg_.d_mlp, dtype=torch.bool))
    run = finetune(lm, data, get_method("sct-tune"), FinetuneConfig(steps=1, batch_size=2, progress=False), artifacts={"circuit": circuit})
    after = dict(run.lm.model.named_parameters())
    k0 = before["blocks.3.attn._W_K"]
    assert torch.equal(after["blocks.3.attn._W_K"][[0, 2]], k0[[0, 2]]) and not torch.equal(after["blocks.3.attn._W_K"][1], k0[1])
    assert torch.equal(after["blocks.3.attn.W_Q"][:4], before["blocks.3.attn.W_Q"][:4])


def test_bf16_model_trains_float32_masters_and_keeps_frozen_entries(data):
    """A bf16 model: updates far below a bf16 ulp still accumulate (float32 masters), masked
    entries stay bitwise, the caller's model is untouched and the saved weights are the masters."""
    from conftest import random_lm

    lm = random_lm("llama", torch.bfloat16)
    before = params(lm)
    run = finetune(lm, data, MaskFirstRows(), cfg(steps=4, lr=1e-6, weight_decay=0.1))
    assert run.provenance["master_weights"] == "float32" and run.provenance["dtype"] == "bfloat16"
    assert all(torch.equal(before[n], p) for n, p in params(lm).items()), "finetune mutated the caller's model"
    masters = run.masters
    after = params(run.lm)
    for n in before:
        if n.endswith("mlp.W_in"):
            assert torch.equal(after[n][1:], before[n][1:])
            moved = masters[n][0].detach() - before[n][0].float()
            assert float(moved.abs().max()) > 0, "an update below half a bf16 ulp was lost: no master weights?"
            assert float(moved.abs().max()) < 1e-4
            assert torch.equal(masters[n][1:], before[n][1:].float())
        elif n != "unembed.b_U":
            assert torch.equal(after[n], before[n])


def test_bf16_lora_factors_are_float32(data):
    from conftest import random_lm

    from safecircuits.finetune.lora import lora_parameters

    lm = random_lm("llama", torch.bfloat16)
    student = copy_loaded(lm)
    add_lora(student.model, rank=2)
    factors = lora_parameters(student.model)
    assert factors and all(p.dtype == torch.float32 for p in factors.values())
    toks = torch.tensor([[2, 4, 10, 11, 12]])
    assert student.model(toks).dtype == torch.bfloat16  # the model still computes in bf16
    run = finetune(lm, data, get_method("lora"), cfg(steps=2, lr=1e-2))
    assert run.lm.model.blocks[0].attn.W_Q.dtype == torch.bfloat16


def test_gradient_checkpointing_gives_the_same_weights(data):
    from conftest import random_lm

    lm = random_lm("llama")
    a = params(finetune(lm, data, get_method("sft"), cfg(steps=3)).lm)
    b = params(finetune(lm, data, get_method("sft"), cfg(steps=3, gradient_checkpointing=True)).lm)
    for n in a:
        torch.testing.assert_close(b[n], a[n], rtol=1e-5, atol=1e-6, msg=n)
    assert not all(torch.equal(a[n], p) for n, p in params(lm).items())


def test_interrupt_checkpoints_into_the_cache_and_a_rerun_resumes(data, tmp_path, monkeypatch):
    """Ctrl-C during a step saves the finished steps (into the cache when there is no out_dir); the
    rerun resumes and ends with the weights of an uninterrupted run; the finished run removes its checkpoint."""
    from conftest import random_lm

    monkeypatch.setenv("SAFECIRCUITS_CACHE", str(tmp_path))
    lm = random_lm("llama")

    class Interrupt(Method):
        name = "interrupt-test"
        calls = 0

        def extra_loss(self, ctx, step, batch, logits):
            Interrupt.calls += 1
            if Interrupt.calls == 4:
                raise KeyboardInterrupt
            return {}

    c = cfg(steps=6, checkpoint_seconds=0.0)
    Interrupt.calls = 10  # the uninterrupted reference run
    full = params(finetune(lm, data, Interrupt(), cfg(steps=6, checkpoint_seconds=None)).lm)
    Interrupt.calls = 0
    with pytest.raises(KeyboardInterrupt):
        finetune(lm, data, Interrupt(), c)
    ckpts = list((tmp_path / "checkpoints" / "finetune").glob("*.pt"))
    assert len(ckpts) == 1 and torch.load(ckpts[0], weights_only=False)["step"] == 3
    Interrupt.calls = 10  # no more interrupts
    resumed = finetune(lm, data, Interrupt(), c)
    assert resumed.provenance["resumed_from"] == 3
    after = params(resumed.lm)
    assert all(torch.equal(after[n], full[n]) for n in full)
    assert not list((tmp_path / "checkpoints" / "finetune").glob("*.pt"))
