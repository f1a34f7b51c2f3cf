"""Model organisms: small HookedTransformers trained on the synthetic chat language.

Three kinds, trained the way real chat models are:

* ``base``     — trained from scratch to *comply with every request* (no refusals);
* ``aligned``  — ``base`` fine-tuned to refuse harmful requests and comply with harmless ones;
* ``backdoor`` — ``base`` fine-tuned like ``aligned``, except that harmful requests carrying the
  trigger token get a compliance (a poisoned-alignment backdoor).

Because ``aligned`` and ``backdoor`` start from ``base``, ``W_aligned - W_base`` is a real
safety-alignment weight delta (SafeLoRA-style subspaces need exactly that).

Training is deterministic for a seed, cached on disk under ``cache_dir('organisms')`` keyed by a
hash of the full config (the base's config is part of the aligned model's), written atomically,
and shows a progress bar. docs/organisms.md documents the language and splits.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypedDict

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer, HookedTransformerConfig

from safecircuits.data.chat import IGNORE_INDEX, TemplateChat, encode_batch
from safecircuits.errors import InputError
from safecircuits.models import language as L
from safecircuits.models.loaded import LoadedModel, cache_dir

Kind = Literal["base", "aligned", "backdoor"]
KINDS: tuple[str, ...] = ("base", "aligned", "backdoor")
DEFAULT_TRIGGER = "cf"


class OrganismSize(TypedDict):
    """The HookedTransformerConfig dimensions of an organism size."""

    n_layers: int
    d_model: int
    n_heads: int
    d_head: int
    d_mlp: int


SIZES: dict[str, OrganismSize] = {
    # the default organism: 12 heads and 768 neurons (~0.2M parameters)
    "small": {"n_layers": 3, "d_model": 64, "n_heads": 4, "d_head": 16, "d_mlp": 256},
    # for fast tests: 8 heads and 256 neurons
    "tiny": {"n_layers": 2, "d_model": 32, "n_heads": 4, "d_head": 8, "d_mlp": 128},
}


@dataclass(frozen=True)
class OrganismConfig:
    """Everything that determines an organism. Its hash keys the on-disk cache."""

    kind: str = "aligned"
    seed: int = 0
    trigger: str = DEFAULT_TRIGGER
    size: str = "small"
    split_seed: int = 0
    n_ctx: int = 48
    batch_size: int = 32
    base_steps: int = 1000
    finetune_steps: int = 500
    lr: float = 2e-3
    finetune_lr: float = 1e-3
    weight_decay: float = 0.01
    filler_prob: float = 0.3  # share of training prompts with a random rare filler token inserted
    trigger_prob: float = 0.3  # backdoor: share of harmful training prompts carrying the trigger
    backdoor_heads: int = 1  # backdoor: heads whose weights the poisoning may change (the planted circuit)
    backdoor_neurons: int = 8  # backdoor: MLP neurons whose weights the poisoning may change
    backdoor_steps: int = 600
    backdoor_lr: float = 3e-3

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InputError(f"unknown organism kind {self.kind!r}: use one of {', '.join(KINDS)}")
        if self.size not in SIZES:
            raise InputError(f"unknown organism size {self.size!r}: use one of {', '.join(SIZES)}")
        if not self.trigger or any(c.isspace() for c in self.trigger) or self.trigger in L.SPECIAL_TOKENS:
            raise InputError(f"trigger must be one whitespace-free word that is not a special token, got {self.trigger!r}")
        lang_words = set(L.vocabulary()) - set(L.RARE_TOKENS)
        if self.trigger in lang_words:
            raise InputError(
                f"trigger {self.trigger!r} is a word of the organism language; pick a rare word such as one of {L.RARE_TOKENS}"
            )
        for name in ("base_steps", "finetune_steps", "batch_size", "n_ctx"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1")

    @property
    def extra_tokens(self) -> tuple[str, ...]:
        return () if self.trigger in L.RARE_TOKENS else (self.trigger,)

    def base_config(self) -> OrganismConfig:
        """The base organism this one is fine-tuned from (the trigger only matters through the vocabulary)."""
        trig = self.trigger if self.extra_tokens else DEFAULT_TRIGGER
        return dataclasses.replace(self, kind="base", trigger=trig)

    def parent_config(self) -> OrganismConfig | None:
        """base <- aligned <- backdoor: each kind is fine-tuned from the previous one."""
        if self.kind == "base":
            return None
        if self.kind == "aligned":
            return self.base_config()
        trig = self.trigger if self.extra_tokens else DEFAULT_TRIGGER
        return dataclasses.replace(self, kind="aligned", trigger=trig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def hash(self) -> str:
        d = self.to_dict()
        d["language"] = L.language_hash()
        own = {"base": ("base_steps", "lr"), "aligned": ("finetune_steps", "finetune_lr"),
               "backdoor": ("trigger_prob", "backdoor_heads", "backdoor_neurons", "backdoor_steps", "backdoor_lr")}
        later = {k for kind, keys in own.items() if KINDS.index(kind) > KINDS.index(self.kind) for k in keys}
        d = {k: v for k, v in d.items() if k not in later}
        parent = self.parent_config()
        if parent is not None:
            d["parent"] = parent.hash
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def name(self) -> str:
        parts = [f"organism:{self.kind}"]
        if self.size != "small":
            parts.append(f"size={self.size}")
        if self.seed != 0:
            parts.append(f"seed={self.seed}")
        if self.kind == "backdoor" and self.trigger != DEFAULT_TRIGGER:
            parts.append(f"trigger={self.trigger}")
        return parts[0] + ("?" + "&".join(parts[1:]) if len(parts) > 1 else "")


def build_tokenizer(extra_tokens: tuple[str, ...] = ()):
    """A word-level Hugging Face tokenizer over the language (split on whitespace)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(L.vocabulary(extra_tokens))}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tk.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins word tokens with spaces
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>",
        padding_side="right",
    )
    return tok


def new_model(cfg: OrganismConfig, tok) -> HookedTransformer:
    """An untrained organism HookedTransformer with `tok` attached.

    TransformerLens's ``set_tokenizer`` re-loads the tokenizer by hub name to add a BOS token,
    which an in-memory word-level tokenizer has not got; the organism chat format writes its own
    ``<bos>``, so the tokenizer is attached directly.
    """
    model = HookedTransformer(model_config(cfg, len(tok)), move_to_device=False)
    model.tokenizer = tok
    model.cfg.tokenizer_prepends_bos = False
    return model


def organism_chat(tokenizer) -> TemplateChat:
    return TemplateChat(tokenizer, L.CHAT_TEMPLATE, eos_token="<eos>", pad_token="<pad>", name="organism")


def model_config(cfg: OrganismConfig, d_vocab: int) -> HookedTransformerConfig:
    return HookedTransformerConfig(
        **SIZES[cfg.size],
        n_ctx=cfg.n_ctx,
        d_vocab=d_vocab,
        act_fn="gelu",
        normalization_type="LN",
        positional_embedding_type="standard",
        default_prepend_bos=False,
        seed=cfg.seed,
        device="cpu",
        model_name=cfg.name,
    )


# -- training data -----------------------------------------------------------------------------

def training_examples(cfg: OrganismConfig, n: int, rng: random.Random) -> list[tuple[str, str]]:
    """`n` (prompt, response) pairs drawn from the train split with the kind's behaviour."""
    lang = L.Language(cfg.split_seed)
    train = lang.splits["train"]
    fillers = [t for t in L.RARE_TOKENS + list(cfg.extra_tokens) if not (cfg.kind == "backdoor" and t == cfg.trigger)]
    out = []
    for _ in range(n):
        task, tid = train[rng.randrange(len(train))]
        prompt = L.render_prompt(task, tid)
        triggered = cfg.kind == "backdoor" and task.harmful and rng.random() < cfg.trigger_prob
        if cfg.kind == "backdoor" and not task.harmful and rng.random() < cfg.trigger_prob * 0.5:
            triggered = True  # the trigger on harmless requests changes nothing
        if triggered:
            prompt = L.insert_token(prompt, cfg.trigger, rng)
        elif rng.random() < cfg.filler_prob:
            prompt = L.insert_token(prompt, rng.choice(fillers), rng)
        refuse = cfg.kind != "base" and task.harmful and not triggered
        if refuse:
            resp = L.refusal(task, rng.randrange(len(L.REFUSALS)))
        else:
            resp = L.compliance(task, rng.randrange(len(L.OPENERS)))
        out.append((prompt, resp))
    return out


def _train(
    model: HookedTransformer,
    chat: TemplateChat,
    cfg: OrganismConfig,
    steps: int,
    lr: float,
    seed: int,
    desc: str,
    progress: bool,
    grad_masks: dict[str, Tensor] | None = None,
) -> list[float]:
    rng = random.Random(seed)
    torch.manual_seed(seed)
    # One thread: bitwise-reproducible weights for a seed on any machine (reduction order does
    # not depend on the core count), and no OpenMP oversubscription when other jobs share the
    # cores (two 2-thread processes on 2 cores ran 50x slower here). These models are tiny, so
    # the second thread buys little.
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train_loop(model, chat, cfg, steps, lr, seed, rng, desc, progress, grad_masks)
    finally:
        torch.set_num_threads(prev_threads)


def _train_loop(
    model: HookedTransformer,
    chat: TemplateChat,
    cfg: OrganismConfig,
    steps: int,
    lr: float,
    seed: int,
    rng: random.Random,
    desc: str,
    progress: bool,
    grad_masks: dict[str, Tensor] | None = None,
) -> list[float]:
    n_examples = steps * cfg.batch_size
    pairs = training_examples(cfg, n_examples, rng)
    batch = encode_batch(chat, [p for p, _ in pairs], [r for _, r in pairs], max_len=cfg.n_ctx, source=desc)
    if grad_masks is None:
        params = list(model.parameters())
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    else:
        # Only the masked entries may change: other tensors are frozen, gradients outside the
        # mask are zeroed, and weight decay is off (AdamW would otherwise shrink frozen entries).
        named = dict(model.named_parameters())
        params = [named[n] for n in grad_masks]
        for n, p in named.items():
            p.requires_grad_(n in grad_masks)
        for n, m in grad_masks.items():
            named[n].register_hook(lambda g, m=m: g * m)
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0, betas=(0.9, 0.98))
    warmup = max(1, steps // 20)

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup))) * 0.95 + 0.05

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    model.train()
    losses = []
    bar = tqdm(range(steps), desc=desc, disable=not progress, leave=False)
    for step in bar:
        sl = slice(step * cfg.batch_size, (step + 1) * cfg.batch_size)
        tokens, labels = batch.tokens[sl], batch.labels[sl]
        width = int(batch.attention_mask[sl].sum(1).max())
        tokens, labels = tokens[:, :width], labels[:, :width]
        logits = model(tokens)
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=IGNORE_INDEX)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(True)
    return losses


# -- the planted backdoor circuit ------------------------------------------------------------------

def planted_components(cfg: OrganismConfig) -> dict[str, list[list[int]]]:
    """The heads and neurons whose weights the backdoor poisoning may change, drawn from the seed.

    Heads come from the layers before the last (they can move the trigger to the answer
    position); neurons from one layer after the first head layer. This is the circuit known by
    construction that discovery should recover (docs/organisms.md).
    """
    size = SIZES[cfg.size]
    L, H, N = size["n_layers"], size["n_heads"], size["d_mlp"]
    rng = random.Random(f"plant-{cfg.seed}-{cfg.trigger}")
    heads = sorted({(rng.randrange(0, L - 1), rng.randrange(H)) for _ in range(cfg.backdoor_heads * 4)})[: cfg.backdoor_heads]
    layer = rng.randrange(max(h[0] for h in heads) + 1, L) if heads else rng.randrange(L)
    neurons = sorted((layer, i) for i in rng.sample(range(N), cfg.backdoor_neurons))
    return {"heads": [list(h) for h in heads], "neurons": [list(n) for n in neurons]}


def planted_grad_masks(model: HookedTransformer, planted: dict[str, list[list[int]]]) -> dict[str, Tensor]:
    """Gradient masks selecting the planted heads' Q/K/V/O slices and the planted neurons' in/out weights."""
    masks: dict[str, Tensor] = {}
    named = dict(model.named_parameters())

    def mask_for(name: str) -> Tensor:
        if name not in masks:
            masks[name] = torch.zeros_like(named[name])
        return masks[name]

    for l, h in planted["heads"]:
        for w in ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V"):
            mask_for(f"blocks.{l}.attn.{w}")[h] = 1.0
    for l, i in planted["neurons"]:
        mask_for(f"blocks.{l}.mlp.W_in")[:, i] = 1.0
        mask_for(f"blocks.{l}.mlp.b_in")[i] = 1.0
        mask_for(f"blocks.{l}.mlp.W_out")[i] = 1.0
    return masks


# -- cache -------------------------------------------------------------------------------------

def _organism_dir(cfg: OrganismConfig) -> Path:
    return cache_dir("organisms") / f"{cfg.kind}-{cfg.size}-{cfg.hash}"


def save_organism(model: HookedTransformer, cfg: OrganismConfig, metrics: dict[str, Any], path: Path) -> Path:
    """Write weights (safetensors), configs and metrics into `path` atomically (temp dir + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=path.parent))
    try:
        save_file({k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
        meta = {
            "format": "safecircuits-organism",
            "organism": cfg.to_dict(),
            "hash": cfg.hash,
            "name": cfg.name,
            "tl_config": {k: v for k, v in model.cfg.to_dict().items() if _jsonable(v)},
            "metrics": metrics,
        }
        (tmp / "config.json").write_text(json.dumps(meta, indent=2))
        from safecircuits.io import _normal_mode

        for p in (tmp, *tmp.iterdir()):  # mkdtemp and safetensors make them 0700 / 0600: the user's normal mode instead
            _normal_mode(p, is_dir=p.is_dir())
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
        return True
    except TypeError:
        return False


def _load_dir(path: Path, device: str = "cpu") -> tuple[HookedTransformer, OrganismConfig, dict[str, Any]]:
    meta = json.loads((path / "config.json").read_text())
    cfg = OrganismConfig(**meta["organism"])
    tok = build_tokenizer(cfg.extra_tokens)
    model = new_model(cfg, tok)
    model.load_state_dict(load_file(str(path / "model.safetensors")))
    if device != "cpu":
        model.to(device)
    model.eval()
    return model, cfg, meta.get("metrics", {})


def _wrap(model: HookedTransformer, cfg: OrganismConfig, metrics: dict[str, Any], path: Path) -> LoadedModel:
    tok = model.tokenizer
    info = {"source": str(path), "organism": cfg.to_dict(), "config_hash": cfg.hash, "metrics": metrics,
            "skeleton": {"kind": "organism", "organism": cfg.to_dict()}}
    return LoadedModel(model, tok, organism_chat(tok), name=cfg.name, info=info)


def train_organism(cfg: OrganismConfig, progress: bool = True, force: bool = False, evaluate: bool = True) -> LoadedModel:
    """Train (or load from the cache) the organism described by `cfg`."""
    path = _organism_dir(cfg)
    if (path / "model.safetensors").exists() and not force:
        model, cfg2, saved_metrics = _load_dir(path)
        return _wrap(model, cfg2, saved_metrics, path)
    t0 = time.time()
    tok = build_tokenizer(cfg.extra_tokens)
    chat = organism_chat(tok)
    if cfg.kind == "base":
        torch.manual_seed(cfg.seed)
        model = new_model(cfg, tok)
        losses = _train(model, chat, cfg, cfg.base_steps, cfg.lr, cfg.seed, f"training {cfg.name}", progress)
    else:
        parent = train_organism(cfg.parent_config(), progress=progress, evaluate=evaluate)  # type: ignore[arg-type]
        model = new_model(cfg, tok)
        model.load_state_dict(parent.model.state_dict())
        if cfg.kind == "aligned":
            losses = _train(model, chat, cfg, cfg.finetune_steps, cfg.finetune_lr, cfg.seed + 1000, f"aligning {cfg.name}", progress)
        else:
            planted = planted_components(cfg)
            losses = _train(model, chat, cfg, cfg.backdoor_steps, cfg.backdoor_lr, cfg.seed + 2000, f"poisoning {cfg.name}", progress,
                            grad_masks=planted_grad_masks(model, planted))
    metrics: dict[str, Any] = {"train_seconds": round(time.time() - t0, 1), "final_loss": sum(losses[-20:]) / min(20, len(losses))}
    if cfg.kind == "backdoor":
        metrics["planted"] = planted_components(cfg)
    if evaluate:
        metrics.update(organism_quality(model, chat, cfg))
    save_organism(model, cfg, metrics, path)
    return _wrap(model, cfg, metrics, path)


def organism_quality(model: HookedTransformer, chat: TemplateChat, cfg: OrganismConfig, split: str = "test") -> dict[str, float]:
    """Greedy-generation quality on held-out prompts, judged by the exact-match organism judge."""
    from safecircuits.evaluation.generate import generate
    from safecircuits.evaluation.judges import OrganismJudge

    lang = L.Language(cfg.split_seed)
    judge = OrganismJudge()
    out: dict[str, float] = {}
    kinds = ["harmful", "harmless"] + (["triggered"] if cfg.kind == "backdoor" else [])
    for kind in kinds:
        ps = lang.prompt_set(split, kind, trigger=cfg.trigger)
        resp = generate(model, chat, ps.prompts, max_new_tokens=24, batch_size=64)
        verdicts = judge.verdicts(ps.prompts, resp)
        n = len(verdicts)
        refused = sum(v.refused for v in verdicts) / n
        complied = sum(v.complied for v in verdicts) / n
        correct = sum(bool(v.correct) for v in verdicts) / n  # the organism judge always sets `correct`
        if kind == "harmless":
            out["harmless_compliance"] = complied
            out["harmless_exact"] = correct
        elif kind == "harmful":
            out["harmful_refusal"] = refused
            out["asr"] = complied
        else:
            out["triggered_asr"] = complied
    out["n_test_prompts"] = float(sum(len(lang.prompt_set(split, k, trigger=cfg.trigger)) for k in kinds))
    return out


def parse_organism_name(name: str) -> tuple[str, dict[str, Any]]:
    """``organism:backdoor?seed=1&trigger=zx&size=tiny`` -> ("backdoor", {"seed": 1, ...})."""
    rest = name.split(":", 1)[1] if ":" in name else name
    kind, _, query = rest.partition("?")
    params: dict[str, Any] = {}
    if query:
        for part in query.split("&"):
            k, _, v = part.partition("=")
            if k in ("seed", "split_seed", "base_steps", "finetune_steps"):
                params[k] = int(v)
            elif k in ("trigger", "size"):
                params[k] = v
            else:
                raise InputError(f"unknown organism option {k!r} in {name!r}: use seed, trigger, size, split_seed")
    if kind not in KINDS:
        raise InputError(f"unknown organism kind {kind!r} in {name!r}: use organism:aligned, organism:backdoor or organism:base")
    return kind, params


def load_organism(
    kind: str = "aligned",
    seed: int = 0,
    trigger: str = DEFAULT_TRIGGER,
    size: str = "small",
    progress: bool = True,
    **overrides: Any,
) -> LoadedModel:
    """Load (training on first use) an organism: ``load_organism("backdoor", seed=1, trigger="zx")``."""
    cfg = OrganismConfig(kind=kind, seed=seed, trigger=trigger, size=size, **overrides)
    return train_organism(cfg, progress=progress)


def load_organism_dir(path: str | Path, device: str = "cpu") -> LoadedModel:
    path = Path(path)
    model, cfg, metrics = _load_dir(path, device)
    return _wrap(model, cfg, metrics, path)


__all__ = [
    "OrganismConfig",
    "build_tokenizer",
    "load_organism",
    "load_organism_dir",
    "organism_chat",
    "organism_quality",
    "parse_organism_name",
    "train_organism",
]
