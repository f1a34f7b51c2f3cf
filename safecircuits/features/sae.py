"""Training sparse autoencoders on HookedTransformer activations with SAELens, offline.

Only the glue is ours: activations of a :class:`~safecircuits.data.PromptSet` are collected at one
hook (non-pad positions only), shuffled into an in-memory buffer, and fed to SAELens's own
``SAETrainer`` through a data-provider iterator. The SAE classes, their training configs and the
training loop (optimiser, schedules, dead-feature tracking, tqdm bar, checkpoints) are SAELens's.

The final SAE is saved in SAELens's own format (``save_inference_model``: ``cfg.json`` +
``sae_weights.safetensors``), so ``sae_lens.SAE.load_from_disk(path)`` loads it; our record
(provenance and quality) goes alongside as ``safecircuits_sae.json``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from sae_lens import SAE, SAETrainer
from sae_lens.config import LoggingConfig, SAETrainerConfig
from sae_lens.evals import ExplainedVarianceCalculator
from sae_lens.registry import get_sae_training_class
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from safecircuits.data.chat import ChatFormat, iter_batches
from safecircuits.data.promptset import PromptSet
from safecircuits.errors import InputError, MissingFileError
from safecircuits.models import LoadedModel
from safecircuits.types import HookedModel

RECORD_FILE = "safecircuits_sae.json"
FORMAT = "safecircuits-sae/1"
ARCHS = ("standard", "topk", "jumprelu")
HOOK_PATTERNS = (
    r"blocks\.(\d+)\.hook_resid_pre",
    r"blocks\.(\d+)\.hook_resid_mid",
    r"blocks\.(\d+)\.hook_resid_post",
    r"blocks\.(\d+)\.hook_attn_out",
    r"blocks\.(\d+)\.hook_mlp_out",
)


# -- hooks --------------------------------------------------------------------------------------
def valid_hooks(model: HookedModel) -> list[str]:
    """Hooks an SAE can be trained on: residual stream and attention / MLP outputs of every block."""
    out = []
    for layer in range(model.cfg.n_layers):
        for kind in ("hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out", "hook_mlp_out"):
            name = f"blocks.{layer}.{kind}"
            if name in model.hook_dict:
                out.append(name)
    return out


def check_hook(model: HookedModel, hook: str) -> int:
    """Validate `hook` for SAE training and return its block index."""
    hooks = valid_hooks(model)
    if hook not in hooks:
        raise InputError(
            f"unknown or unsupported hook {hook!r} for {model.cfg.model_name}: use one of {', '.join(hooks)}"
        )
    return hook_layer(hook)


def hook_layer(hook: str) -> int:
    for pat in HOOK_PATTERNS:
        m = re.fullmatch(pat, hook)
        if m:
            return int(m.group(1))
    raise InputError(f"hook {hook!r} is not a block hook of the form blocks.L.hook_resid_pre/resid_mid/resid_post/attn_out/mlp_out")


# -- activations --------------------------------------------------------------------------------
def first_token_mask(attention_mask: Tensor) -> Tensor:
    """Bool [batch, pos]: True at each row's first real (non-pad) token, for left or right padding."""
    m = attention_mask.bool()
    return m & (m.long().cumsum(1) == 1)


def sae_domain(attention_mask: Tensor, exclude_first_token: bool) -> Tensor:
    """Bool [batch, pos]: the positions an SAE reads and edits: every real token, less each row's
    first one when the SAE excludes it (see :func:`train_sae`)."""
    m = attention_mask.bool()
    return m & ~first_token_mask(m) if exclude_first_token else m


def excludes_first_token(sae: SAE) -> bool:
    """Whether `sae` was trained without each sequence's first token (recorded in its cfg.json)."""
    return bool(sae.cfg.metadata.exclude_first_token)


@torch.no_grad()
def collect_activations(
    model: HookedModel,
    chat: ChatFormat,
    prompts: PromptSet,
    hook: str,
    batch_size: int = 32,
    progress: bool = False,
    exclude_first_token: bool = False,
) -> Float[Tensor, "n_tokens d_in"]:
    """Activations at `hook` on every non-pad token of `prompts` (with their responses, where given),
    less each sequence's first token with ``exclude_first_token``.

    Records with a response are encoded as prompt + response; those without, as the prompt alone.
    """
    check_hook(model, hook)
    prompts.require_nonempty()
    out: list[Tensor] = []
    parts = [p for p in (prompts.filter(has_response=True), prompts.filter(has_response=False)) if len(p)]
    total = sum((len(p) + batch_size - 1) // batch_size for p in parts)
    bar = tqdm(total=total, desc=f"activations {hook}", disable=not progress, leave=False)
    for part in parts:
        with_resp = part.responses[0] is not None
        for b in iter_batches(chat, part, batch_size, max_len=model.cfg.n_ctx, with_responses=with_resp):
            _, cache = model.run_with_cache(
                b.tokens.to(model.cfg.device), attention_mask=b.attention_mask.to(model.cfg.device), names_filter=hook,
                stop_at_layer=hook_layer(hook) + 1,
            )
            act = cache[hook]
            out.append(act[sae_domain(b.attention_mask, exclude_first_token).to(act.device)].float().cpu())
            bar.update(1)
    bar.close()
    return torch.cat(out)


def activation_provider(
    acts: Float[Tensor, "n_tokens d_in"], batch_size: int, seed: int = 0
) -> Iterator[Tensor]:
    """SAELens data provider: endless shuffled minibatches from an in-memory activation buffer
    (a fresh permutation each pass, drawn from a seeded generator)."""
    if acts.ndim != 2 or acts.shape[0] == 0:
        raise InputError(f"the activation buffer must be a non-empty [n_tokens, d_in] tensor, got {tuple(acts.shape)}")
    gen = torch.Generator().manual_seed(seed)
    n = acts.shape[0]
    bs = min(batch_size, n)
    while True:
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n - bs + 1, bs):
            yield acts[perm[i : i + bs]]


# -- record -------------------------------------------------------------------------------------
@dataclass
class TrainedSAE:
    """An SAELens SAE plus our record: where it lives, provenance, and quality on held-out prompts."""

    sae: SAE
    path: Path | None
    provenance: dict[str, Any] = field(default_factory=dict)
    quality: dict[str, float] = field(default_factory=dict)

    @property
    def hook(self) -> str:
        return self.provenance["hook"]

    @property
    def model_name(self) -> str:
        return self.provenance["model"]

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "provenance": self.provenance, "quality": self.quality}

    def save(self, path: str | Path) -> Path:
        """Save in SAELens's format plus our record (atomically: a temp dir, then renames)."""
        path = Path(path)
        _save_dir(self.sae, path, self.to_dict())
        self.path = path
        return path

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> TrainedSAE:
        path = Path(path)
        sae = load_sae(path, device=device)
        rec_file = path / RECORD_FILE
        rec: dict[str, Any] = json.loads(rec_file.read_text()) if rec_file.exists() else {}
        prov = rec.get("provenance") or {
            "model": sae.cfg.metadata.model_name,
            "hook": sae.cfg.metadata.hook_name,
            "arch": sae.cfg.architecture(),
            "d_sae": sae.cfg.d_sae,
        }
        return cls(sae, path, prov, rec.get("quality", {}))

    def summary(self) -> str:
        q = self.quality
        return (
            f"{self.provenance.get('arch')} SAE on {self.provenance.get('model')} @ {self.provenance.get('hook')}, d_sae={self.sae.cfg.d_sae}: "
            f"explained variance {q.get('explained_variance', float('nan')):.3f}, mean L0 {q.get('l0', float('nan')):.1f}, "
            f"CE recovered {q.get('ce_recovered', float('nan')):.3f} (response tokens {q.get('ce_recovered_response', float('nan')):.3f})"
        )


def load_sae(path: str | Path, device: str = "cpu") -> SAE:
    """Load an SAE directory (SAELens format) written by :func:`train_sae`."""
    path = Path(path)
    if not path.is_dir():
        raise MissingFileError(f"SAE directory {path} does not exist; train one with `safecircuits sae train ... --out {path}`")
    if not (path / "cfg.json").exists() or not (path / "sae_weights.safetensors").exists():
        raise MissingFileError(f"{path} is not an SAELens SAE directory (needs cfg.json and sae_weights.safetensors)")
    try:
        return SAE.load_from_disk(str(path), device=device)
    except Exception as e:  # noqa: BLE001 - a malformed cfg.json or weights file: say which directory
        raise InputError(f"{path}: not a loadable SAELens SAE directory ({type(e).__name__}: {str(e)[:300]}); "
                         "train it again with `safecircuits sae train`") from None


def check_sae_matches(sae: SAE, model_name: str, hook: str | None = None) -> None:
    """Raise if `sae` was trained on another model or hook."""
    meta = sae.cfg.metadata
    if meta.model_name is not None and meta.model_name != model_name:
        raise InputError(f"this SAE was trained on model {meta.model_name!r}, not {model_name!r}; pass --model {meta.model_name}")
    if hook is not None and meta.hook_name is not None and meta.hook_name != hook:
        raise InputError(f"this SAE was trained on hook {meta.hook_name!r}, not {hook!r}; use hook {meta.hook_name}")


def _save_dir(sae: SAE, path: Path, record: dict[str, Any], extra_dir: Path | None = None) -> None:
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / f".tmp-save-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    if hasattr(sae, "save_inference_model"):
        sae.save_inference_model(str(tmp))  # TrainingSAE: fold training-only details away
    else:
        sae.save_model(str(tmp))
    (tmp / RECORD_FILE).write_text(json.dumps(record, indent=1, default=_json_default))
    from safecircuits.io import _normal_mode

    for f in tmp.iterdir():
        _normal_mode(f, is_dir=f.is_dir())  # safetensors writes 0600; results get the user's normal mode
        os.replace(f, path / f.name)
    tmp.rmdir()


def _json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, Tensor):
        return o.tolist()
    return str(o)


# -- quality ------------------------------------------------------------------------------------
def _per_token_ce(logits: Tensor, tokens: Tensor, chunk: int = 8) -> Float[Tensor, "batch pos_minus_1"]:
    """Next-token cross-entropy per position, in float32, a few rows at a time (SmolLM2's 49k
    vocabulary makes full-batch float32 log-softmax cost gigabytes)."""
    out = []
    for i in range(0, logits.shape[0], chunk):
        lg = logits[i : i + chunk, :-1].float()
        out.append(torch.nn.functional.cross_entropy(lg.flatten(0, 1), tokens[i : i + chunk, 1:].flatten(), reduction="none")
                   .view(lg.shape[0], lg.shape[1]))
    return torch.cat(out)


def _recons_ce(model: HookedModel, sae: SAE, hook: str, tokens: Tensor, mask: Tensor, domain: Tensor) -> dict[str, Tensor]:
    """Per-token CE [batch, pos-1] of the clean model, with the SAE's reconstruction in place of the
    activation, and with the activation zeroed, at the `domain` positions only.

    SAELens's ``get_recons_loss`` does the same but replaces every position; an SAE trained without
    the first token must leave that token alone, so the splice takes a position mask here.
    """
    dom = domain[..., None].to(tokens.device)

    def splice(x: Tensor, hook: Any) -> Tensor:  # noqa: ARG001
        x_hat = sae.decode(sae.encode(x.to(sae.device).float())).to(x.device, x.dtype)
        return torch.where(dom, x_hat, x)

    def zero(x: Tensor, hook: Any) -> Tensor:  # noqa: ARG001
        return torch.where(dom, torch.zeros_like(x), x)

    out: dict[str, Tensor] = {}
    runs: list[tuple[str, list[tuple[str | Callable[..., Any], Callable[..., Any]]]]] = [
        ("clean", []),
        ("sae", [(hook, splice)]),
        ("zero", [(hook, zero)]),
    ]
    for name, fwd in runs:
        logits = model.run_with_hooks(tokens, attention_mask=mask, fwd_hooks=fwd)
        out[name] = _per_token_ce(logits, tokens)
    return out


@torch.no_grad()
def evaluate_sae(
    model: HookedModel,
    chat: ChatFormat,
    sae: SAE,
    hook: str,
    prompts: PromptSet,
    batch_size: int = 32,
) -> dict[str, float]:
    """Explained variance, mean L0, dead-feature share and CE loss recovered on `prompts`.

    Every figure is over the SAE's domain: the non-pad tokens, less each sequence's first token
    when the SAE was trained without it (:func:`excludes_first_token`). Explained variance uses
    SAELens's ``ExplainedVarianceCalculator`` (1 - E||x - x_hat||^2 / Var(x)). CE splices the
    reconstruction in at the domain positions (clean, SAE, zero-ablated); per-token losses are
    averaged over positions whose current and next tokens are both real (not padding):
    ``ce_recovered = (CE_zero - CE_sae) / (CE_zero - CE_clean)``. ``ce_recovered_response`` is the
    same over the positions that predict response tokens only (prompts are unpredictable text, so
    the all-token CE is dominated by them; on the last residual stream zero-ablation makes the
    prediction near-uniform, which is about as good as the model on prompt tokens).
    """
    skip_first = excludes_first_token(sae)
    ev = ExplainedVarianceCalculator()
    l0_sum, n_tok = 0.0, 0
    fired = torch.zeros(sae.cfg.d_sae, dtype=torch.float64)
    ce = {"clean": 0.0, "sae": 0.0, "zero": 0.0}
    ce_r = dict(ce)
    n_ce = n_r = 0
    parts = [p for p in (prompts.filter(has_response=True), prompts.filter(has_response=False)) if len(p)]
    for part in parts:
        with_resp = part.responses[0] is not None
        for b in iter_batches(chat, part, batch_size, max_len=model.cfg.n_ctx, with_responses=with_resp):
            tokens = b.tokens.to(model.cfg.device)
            mask = b.attention_mask.to(model.cfg.device)
            domain = sae_domain(mask, skip_first)
            _, cache = model.run_with_cache(tokens, attention_mask=mask, names_filter=hook)
            x = cache[hook][domain].float()
            f = sae.encode(x.to(sae.device))
            ev.add_batch(sae.decode(f).float().cpu(), x.cpu())
            l0_sum += float((f > 0).sum())
            n_tok += x.shape[0]
            fired += (f > 0).sum(0).double().cpu()
            m = _recons_ce(model, sae, hook, tokens, mask, domain)
            valid = (mask[:, :-1] * mask[:, 1:]).bool()
            resp = b.response_mask[:, 1:].to(valid.device) & valid  # positions that predict a response token
            for key in ("clean", "sae", "zero"):
                ce[key] += float(m[key][valid.to(m[key].device)].sum())
                ce_r[key] += float(m[key][resp.to(m[key].device)].sum())
            n_ce += int(valid.sum())
            n_r += int(resp.sum())
    ce = {k: v / max(n_ce, 1) for k, v in ce.items()}
    ce_r = {k: v / max(n_r, 1) for k, v in ce_r.items()}
    denom = ce["zero"] - ce["clean"]
    denom_r = ce_r["zero"] - ce_r["clean"]
    freq = fired / max(n_tok, 1)
    return {
        "ce_response_clean": ce_r["clean"],
        "ce_response_sae": ce_r["sae"],
        "ce_response_zero_ablation": ce_r["zero"],
        "ce_recovered_response": float((ce_r["zero"] - ce_r["sae"]) / denom_r) if n_r and abs(denom_r) > 1e-12 else float("nan"),
        "explained_variance": float(ev.compute()),
        "l0": l0_sum / max(n_tok, 1),
        "ce_clean": ce["clean"],
        "ce_sae": ce["sae"],
        "ce_zero_ablation": ce["zero"],
        "ce_recovered": float((ce["zero"] - ce["sae"]) / denom) if abs(denom) > 1e-12 else float("nan"),
        "dead_fraction": float((freq == 0).double().mean()),
        "n_tokens": float(n_tok),
    }


# -- training -----------------------------------------------------------------------------------
B_DEC_INITS = ("zeros", "mean")


@dataclass
class SAETrainConfig:
    """Hyperparameters of :func:`train_sae` (validated)."""

    arch: str = "topk"
    d_sae: int | None = None  # default: 8 x d_in
    k: int = 16  # topk: active features per token
    l1_coefficient: float = 5.0  # standard: L1 penalty
    l0_coefficient: float = 1.0  # jumprelu: L0 penalty
    training_tokens: int = 200_000
    batch_size: int = 256
    lr: float = 1e-3
    seed: int = 0
    n_checkpoints: int = 2
    exclude_first_token: bool = False  # train, evaluate and splice without each sequence's first token
    # tokens a latent must stay silent before it counts as dead (top-k: the AuxK loss then trains it
    # on the live latents' residual); None: a quarter of training_tokens
    dead_window_tokens: int | None = None
    # the decoder bias at the start, which is also subtracted from the input before encoding:
    # "zeros" (SAELens's default) or "mean" (the training buffer's mean activation)
    b_dec_init: str = "zeros"

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise InputError(f"unknown SAE architecture {self.arch!r}: use one of {', '.join(ARCHS)}")
        if self.d_sae is not None and self.d_sae < 1:
            raise InputError(f"d_sae must be >= 1, got {self.d_sae}")
        if self.k < 1:
            raise InputError(f"k must be >= 1, got {self.k}")
        if self.training_tokens < self.batch_size:
            raise InputError(f"training_tokens ({self.training_tokens}) must be at least one batch ({self.batch_size})")
        if self.lr <= 0:
            raise InputError(f"lr must be > 0, got {self.lr}")
        if self.n_checkpoints < 0:
            raise InputError(f"n_checkpoints must be >= 0, got {self.n_checkpoints}")
        if self.b_dec_init not in B_DEC_INITS:
            raise InputError(f"unknown b_dec_init {self.b_dec_init!r}: use one of {', '.join(B_DEC_INITS)}")
        if self.dead_window_tokens is not None and not self.batch_size <= self.dead_window_tokens <= self.training_tokens:
            raise InputError(f"dead_window_tokens ({self.dead_window_tokens}) must lie between one batch ({self.batch_size}) "
                             f"and training_tokens ({self.training_tokens})")

    @property
    def dead_window_steps(self) -> int:
        if self.dead_window_tokens is not None:
            return max(1, self.dead_window_tokens // self.batch_size)
        return max(50, self.training_tokens // self.batch_size // 4)


def _training_sae(cfg: SAETrainConfig, d_in: int, device: str, model_name: str, hook: str):
    sae_cls, cfg_cls = get_sae_training_class(cfg.arch)
    d_sae = cfg.d_sae or 8 * d_in
    kwargs: dict[str, Any] = {"d_in": d_in, "d_sae": d_sae, "device": device, "dtype": "float32"}
    if cfg.arch == "topk":
        if cfg.k > d_sae:
            raise InputError(f"k ({cfg.k}) cannot exceed d_sae ({d_sae})")
        kwargs["k"] = cfg.k
    elif cfg.arch == "standard":
        kwargs["l1_coefficient"] = cfg.l1_coefficient
    elif cfg.arch == "jumprelu":
        kwargs["l0_coefficient"] = cfg.l0_coefficient
    sae_cfg = cfg_cls(**kwargs)
    sae_cfg.metadata.model_name = model_name
    sae_cfg.metadata.hook_name = hook
    sae_cfg.metadata.exclude_first_token = cfg.exclude_first_token  # saved in cfg.json; the splice reads it
    return sae_cls(sae_cfg)


def train_sae(
    model_or_lm: LoadedModel | HookedTransformer,
    prompts: PromptSet | None,
    hook: str,
    arch: str = "topk",
    d_sae: int | None = None,
    k: int = 16,
    l1_coefficient: float = 5.0,
    l0_coefficient: float = 1.0,
    training_tokens: int = 200_000,
    batch_size: int = 256,
    lr: float = 1e-3,
    seed: int = 0,
    out_dir: str | Path | None = None,
    eval_prompts: PromptSet | None = None,
    n_checkpoints: int = 2,
    chat: ChatFormat | None = None,
    model_name: str | None = None,
    progress: bool = True,
    exclude_first_token: bool = False,
    dead_window_tokens: int | None = None,
    b_dec_init: str = "zeros",
) -> TrainedSAE:
    """Train an SAE on `hook` activations of `prompts` with SAELens's ``SAETrainer``.

    ``prompts=None`` uses the model profile's SAE prompts of the train split
    (:meth:`ModelProfile.sae_prompts`). Quality is measured on ``eval_prompts`` (default with
    ``prompts=None``: the profile's val split; else a held-out 20% of `prompts`, which are then not
    trained on). With ``out_dir``, ``n_checkpoints`` intermediate
    checkpoints go to ``out_dir/checkpoints/<n_samples>/`` (each written to a temp dir, then
    renamed) and the final SAE to ``out_dir`` in SAELens's format plus ``safecircuits_sae.json``.

    ``exclude_first_token`` leaves each sequence's first token out of the training buffer, the
    quality figures and every later splice (:func:`~safecircuits.features.splice_sae`). Use it where
    that token is an attention sink: on SmolLM2 its residual stream is orders of magnitude larger
    than any other token's, holds nearly all of the activation variance, and otherwise takes most
    of the reconstruction loss and the latents with it. The choice is saved in the SAE's
    ``cfg.json`` (``metadata.exclude_first_token``).

    ``dead_window_tokens``: how many training tokens a latent must stay silent before SAELens counts
    it dead (for top-k SAEs the AuxK loss then trains the dead latents on what the live ones fail to
    reconstruct). The default, a quarter of ``training_tokens``, only reaches latents that are silent
    for a long stretch; a shorter window revives rare latents sooner.

    ``b_dec_init="mean"`` starts the decoder bias at the buffer's mean activation. The encoder sees
    ``x - b_dec``; where the residual stream has a large mean (on SmolLM2 at layer 24 the mean's norm
    is 260 against a median token norm of 360), a zero start leaves every latent's pre-activation
    dominated by its dot product with that mean, and the latents that point away from it never win
    the top-k. SAELens's trainer used to do this (``b_dec_init_method``); its 6.x ``SAETrainer``
    starts at zero, which stays the default here so that earlier results reproduce.
    """
    cfg = SAETrainConfig(arch=arch, d_sae=d_sae, k=k, l1_coefficient=l1_coefficient, l0_coefficient=l0_coefficient,
                         training_tokens=training_tokens, batch_size=batch_size, lr=lr, seed=seed, n_checkpoints=n_checkpoints,
                         exclude_first_token=exclude_first_token, dead_window_tokens=dead_window_tokens, b_dec_init=b_dec_init)
    if isinstance(model_or_lm, LoadedModel):
        model, chat, name = model_or_lm.model, model_or_lm.chat, model_or_lm.name
        if prompts is None:
            prompts = model_or_lm.profile.sae_prompts("train")
            if eval_prompts is None:
                eval_prompts = model_or_lm.profile.sae_prompts("val")
    else:
        model, name = model_or_lm, model_name or model_or_lm.cfg.model_name
        if chat is None:
            raise InputError("train_sae on a bare HookedTransformer needs chat=...; or pass the LoadedModel from load_model")
    if prompts is None:
        raise InputError("train_sae on a bare HookedTransformer needs a PromptSet of training prompts")
    check_hook(model, hook)
    prompts.require_nonempty()
    if eval_prompts is None:
        if len(prompts) < 5:
            raise InputError(f"{prompts.name}: need at least 5 prompts to hold some out for evaluation, or pass eval_prompts")
        prompts, eval_prompts = prompts.split(0.8, seed=seed)

    acts = collect_activations(model, chat, prompts, hook, progress=progress, exclude_first_token=cfg.exclude_first_token)
    torch.manual_seed(seed)
    sae = _training_sae(cfg, acts.shape[1], str(model.cfg.device), name, hook)
    if cfg.b_dec_init == "mean":
        with torch.no_grad():
            sae.b_dec.copy_(acts.mean(0, dtype=torch.float32).to(sae.b_dec.device, sae.b_dec.dtype))  # no float copy of the buffer

    out = Path(out_dir) if out_dir is not None else None
    provenance: dict[str, Any] = {
        "model": name,
        "hook": hook,
        "arch": cfg.arch,
        "d_in": int(acts.shape[1]),
        "d_sae": int(sae.cfg.d_sae),
        "dataset": prompts.provenance(),
        "eval_dataset": eval_prompts.provenance(),
        "buffer_tokens": int(acts.shape[0]),
        "training_tokens": cfg.training_tokens,
        "seed": cfg.seed,
        "hyperparameters": {k_: v for k_, v in cfg.__dict__.items()},
        "sae_lens_version": sae.cfg.metadata.sae_lens_version,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    save_fn = None
    tmp_ckpt: Path | None = None
    if out is not None and cfg.n_checkpoints > 0:
        out.mkdir(parents=True, exist_ok=True)
        tmp_ckpt = out / ".checkpoints-tmp"
        final_ckpt = out / "checkpoints"
        final_ckpt.mkdir(exist_ok=True)

        def save_fn(checkpoint_path: Path | None) -> None:
            if checkpoint_path is None:
                return
            (checkpoint_path / RECORD_FILE).write_text(json.dumps({"format": FORMAT, "provenance": provenance, "checkpoint": True},
                                                                  indent=1, default=_json_default))
            dest = final_ckpt / checkpoint_path.name
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(checkpoint_path, dest)  # atomic: a checkpoint dir appears complete or not at all

    trainer_cfg = SAETrainerConfig(
        total_training_samples=cfg.training_tokens,
        train_batch_size_samples=cfg.batch_size,
        lr=cfg.lr,
        lr_end=cfg.lr,
        lr_scheduler_name="constant",
        device=str(model.cfg.device),
        n_checkpoints=cfg.n_checkpoints if out is not None else 0,
        checkpoint_path=str(tmp_ckpt) if tmp_ckpt is not None else None,
        save_final_checkpoint=False,
        dead_feature_window=cfg.dead_window_steps,
        feature_sampling_window=max(100, cfg.training_tokens // cfg.batch_size // 2 if cfg.dead_window_tokens is None else 2 * cfg.dead_window_steps),
        logger=LoggingConfig(log_to_wandb=False),
    )
    trainer = SAETrainer(trainer_cfg, sae, activation_provider(acts, cfg.batch_size, seed), save_checkpoint_fn=save_fn)
    if not progress:
        import sae_lens.training.sae_trainer as _st

        orig = _st.tqdm
        _st.tqdm = lambda *a, **kw: orig(*a, **{**kw, "disable": True})
        try:
            trainer.fit()
        finally:
            _st.tqdm = orig
    else:
        trainer.fit()
    if tmp_ckpt is not None and tmp_ckpt.exists():
        shutil.rmtree(tmp_ckpt, ignore_errors=True)

    # the inference SAE: SAELens's own fold of training-only details, via a save/load round trip
    sae.eval()
    import tempfile

    with tempfile.TemporaryDirectory() as td:
        sae.save_inference_model(td)
        inf = SAE.load_from_disk(td, device=str(model.cfg.device))
    quality = evaluate_sae(model, chat, inf, hook, eval_prompts)
    provenance["n_training_steps"] = trainer.n_training_steps
    result = TrainedSAE(inf, None, provenance, quality)
    if out is not None:
        result.save(out)
    return result
