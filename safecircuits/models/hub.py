"""Any TransformerLens-supported model, strictly from the local Hugging Face cache.

:func:`load_transformer_lens` never touches the network: it checks the HF hub cache for the
checkpoint first, and runs ``HookedTransformer.from_pretrained`` with the hub in offline mode
(``HF_HUB_OFFLINE``), so a missing file is an immediate :class:`ModelNotAvailableError` with
instructions rather than a download attempt or a long network timeout.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from transformer_lens import HookedTransformer

from safecircuits.data.chat import ChatFormat, HFChatTemplate, TemplateChat
from safecircuits.errors import ModelNotAvailableError
from safecircuits.models.loaded import LoadedModel

PLAIN_TEMPLATE = "User: {prompt}\nAssistant:"
# What load_model loads without any download (besides cached TransformerLens models and directories).
OFFLINE_NAMES = ("organism:aligned", "organism:backdoor", "organism:base", "smollm2-135m-instruct")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")


def hf_hub_cache_dir() -> Path:
    """The HF hub cache folder, resolved from the environment *now* (huggingface_hub reads it once,
    at import): $HF_HUB_CACHE, $HUGGINGFACE_HUB_CACHE, $HF_HOME/hub, $XDG_CACHE_HOME/huggingface/hub,
    else ~/.cache/huggingface/hub."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.path.expandvars(os.environ[var])).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.path.expandvars(os.environ["HF_HOME"])).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.path.expandvars(xdg)).expanduser() / "huggingface" / "hub"


def repo_cache_path(repo_id: str, cache: Path | None = None) -> Path:
    """Where the HF cache keeps ``repo_id`` (``<cache>/models--org--name``)."""
    return (cache or hf_hub_cache_dir()) / ("models--" + repo_id.replace("/", "--"))


def _how_to(name: str, repo_id: str, cache: Path) -> str:
    return (
        f"How to provide them: on a machine with Hugging Face hub access run `huggingface-cli download {repo_id}` "
        f"(or `hf download {repo_id}`), then copy its hub cache folder (~/.cache/huggingface/hub/"
        f"models--{repo_id.replace('/', '--')}) into {cache} here (or point $HF_HOME / $HF_HUB_CACHE at a copied "
        f"cache); or pass a local directory holding the checkpoint (config.json, weights, tokenizer) as "
        f"load_transformer_lens({name!r}, local_dir=...)."
    )


def official_name(name: str) -> str | None:
    """TransformerLens's official (HF repo) name for ``name`` or an alias, None if unsupported."""
    from transformer_lens.loading_from_pretrained import get_official_model_name

    try:
        return get_official_model_name(name)
    except (ValueError, KeyError):
        return None


def cached_snapshot(repo_id: str, cache: Path | None = None) -> Path | None:
    """The cached snapshot folder of ``repo_id`` (revision main) if it has a config and weights."""
    from huggingface_hub import try_to_load_from_cache

    cache = cache or hf_hub_cache_dir()
    try:
        config = try_to_load_from_cache(repo_id, "config.json", cache_dir=str(cache))
    except Exception:  # a malformed cache counts as "not cached"
        return None
    if not isinstance(config, str):
        return None
    snap = Path(config).parent
    if any(p.suffix in _WEIGHT_SUFFIXES and p.exists() for p in snap.rglob("*")):
        return snap
    return None


@contextlib.contextmanager
def hub_offline(cache: Path | None = None) -> Iterator[None]:
    """Hub offline mode (and the cache folder resolved now), restored afterwards.

    huggingface_hub reads ``HF_HUB_OFFLINE`` and ``HF_HUB_CACHE`` once, at import, so setting the
    environment alone is not enough: the module constants are switched as well.
    """
    from huggingface_hub import constants

    cache = cache or hf_hub_cache_dir()
    saved_env = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    saved_consts = (constants.HF_HUB_OFFLINE, constants.HF_HUB_CACHE)
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    constants.HF_HUB_OFFLINE = True
    constants.HF_HUB_CACHE = str(cache)
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE, constants.HF_HUB_CACHE = saved_consts
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def chat_format_for(tokenizer: Any) -> ChatFormat:
    """The tokenizer's own chat template when it has one, else a plain ``User:/Assistant:`` one."""
    if getattr(tokenizer, "chat_template", None):
        return HFChatTemplate(tokenizer)
    return TemplateChat(tokenizer, PLAIN_TEMPLATE, eos_token=tokenizer.eos_token, name="plain")


def _is_offline_failure(e: BaseException) -> bool:
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    if isinstance(e, LocalEntryNotFoundError | OfflineModeIsEnabled):
        return True
    text = str(e).lower()
    return isinstance(e, OSError | ValueError) and any(
        s in text for s in ("offline", "cached", "local_files_only", "couldn't connect", "cannot find the requested files")
    )


@contextlib.contextmanager
def _local_dir_as_cache(repo_id: str, local_dir: Path) -> Iterator[Path]:
    """A throw-away hub cache in which ``repo_id`` (revision main) is ``local_dir`` (a symlink), so
    TransformerLens reads config, weights and tokenizer from there exactly as from the real cache."""
    if not (local_dir / "config.json").is_file():
        raise ModelNotAvailableError(
            f"weights for {repo_id} are not available offline: the local directory {local_dir} has no config.json"
        )
    with tempfile.TemporaryDirectory(prefix="safecircuits-hub-") as tmp:
        repo = repo_cache_path(repo_id, Path(tmp))
        (repo / "refs").mkdir(parents=True)
        (repo / "snapshots").mkdir()
        (repo / "refs" / "main").write_text("local")
        (repo / "snapshots" / "local").symlink_to(local_dir.resolve(), target_is_directory=True)
        yield Path(tmp)


def load_transformer_lens(
    name: str,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    local_dir: str | Path | None = None,
    **from_pretrained_kwargs: Any,
) -> LoadedModel:
    """``HookedTransformer.from_pretrained(name)`` from the local HF cache only (hub offline).

    ``name`` is a TransformerLens model name or alias (``gpt2``, ``Qwen/Qwen2.5-0.5B-Instruct``).
    ``local_dir``: a checkpoint folder (config.json, weights, tokenizer files, as saved by
    ``save_pretrained`` or ``huggingface-cli download --local-dir``) used in place of the cache.
    Extra keyword arguments go to ``from_pretrained`` (e.g. ``fold_ln=False``). The chat format is
    the tokenizer's own template when it has one, else ``"User: {prompt}\\nAssistant:"``.
    Raises :class:`ModelNotAvailableError` with instructions when the weights are not available
    offline or the name is not supported by TransformerLens.
    """
    cache = hf_hub_cache_dir()
    repo_id = official_name(name)
    if repo_id is None:
        # A made-up name: say what does load offline (there is nothing to download).
        from transformer_lens.supported_models import OFFICIAL_MODEL_NAMES

        low = name.lower()
        close = [n for n in OFFLINE_NAMES if low and (low in n or n in low)]
        close += [n for n in difflib.get_close_matches(name, [*OFFLINE_NAMES, *OFFICIAL_MODEL_NAMES], n=3, cutoff=0.6) if n not in close]
        hint = f" Did you mean {', '.join(close[:3])}?" if close else ""
        raise ModelNotAvailableError(
            f"{name!r} is not a model safecircuits knows: not an organism, SmolLM2, a model directory or a "
            f"TransformerLens-supported model name (transformer_lens.supported_models.OFFICIAL_MODEL_NAMES), so it is not "
            f"available offline.{hint} Models that load offline: {', '.join(OFFLINE_NAMES[:3])} (options after '?', e.g. "
            f"organism:backdoor?size=tiny&seed=1), {OFFLINE_NAMES[3]}, a directory written by safecircuits (an organism, "
            "`safecircuits finetune --out` or `safecircuits align --out`), or a TransformerLens model name whose weights are "
            f"in the local Hugging Face cache ({cache})."
        )
    snapshot = None
    if local_dir is None:
        snapshot = cached_snapshot(repo_id, cache)
        if snapshot is None:
            raise ModelNotAvailableError(
                f"weights for {name} ({repo_id}) are not available offline (no local Hugging Face cache entry at "
                f"{repo_cache_path(repo_id, cache)}). " + _how_to(name, repo_id, cache)
            )
    try:
        with contextlib.ExitStack() as stack:
            read_from = cache
            if local_dir is not None:
                read_from = stack.enter_context(_local_dir_as_cache(repo_id, Path(local_dir).expanduser()))
            stack.enter_context(hub_offline(read_from))
            model = HookedTransformer.from_pretrained(name, device=device, dtype=dtype, **from_pretrained_kwargs)
    except Exception as e:
        if _is_offline_failure(e):
            raise ModelNotAvailableError(
                f"weights for {name} ({repo_id}) are not available offline: "
                + (f"the local directory {local_dir}" if local_dir is not None
                   else f"the local Hugging Face cache entry at {repo_cache_path(repo_id, cache)}")
                + f" is incomplete ({type(e).__name__}: {str(e)[:300]}). "
                + _how_to(name, repo_id, cache)
            ) from e
        raise
    model.eval()
    tokenizer = model.tokenizer
    if tokenizer is None:
        raise ModelNotAvailableError(f"{name}: TransformerLens loaded no tokenizer; " + _how_to(name, repo_id, cache))
    if len(tokenizer) < model.cfg.d_vocab // 2:
        # transformers builds an (almost) empty tokenizer, silently, when its files are missing
        raise ModelNotAvailableError(
            f"weights for {name} ({repo_id}) are not available offline in full: the tokenizer has {len(tokenizer)} "
            f"tokens for a model vocabulary of {model.cfg.d_vocab}, so its tokenizer files are missing from "
            f"{local_dir or repo_cache_path(repo_id, cache)}. " + _how_to(name, repo_id, cache)
        )
    info = {
        "source": f"local:{local_dir}" if local_dir is not None else "hf-cache",
        "hf_repo": repo_id,
        "snapshot": str(snapshot) if snapshot is not None else None,
        "dtype": str(dtype).removeprefix("torch."),
        "device": str(device),
        "skeleton": {"kind": "named", "name": name},
    }
    return LoadedModel(model, tokenizer, chat_format_for(tokenizer), name=name, info=info)
