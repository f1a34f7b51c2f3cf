"""Chat formatting and tokenisation, in one place per model.

A :class:`ChatFormat` turns a user request into the model's prompt token ids (everything up to
where the assistant starts writing) and a response into its token ids (ending with the
end-of-turn token). :func:`encode_batch` builds padded batches whose ``labels`` mask the
prompt (and padding) out of the loss with ``-100``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from safecircuits.data.promptset import PromptSet
from safecircuits.errors import InputError

IGNORE_INDEX = -100


class ChatFormat:
    """Base chat format: subclasses define :meth:`prompt_text` (and may override token handling)."""

    name: str = "chat"

    def __init__(self, tokenizer: Any, eos_token: str, pad_token: str | None = None, bos_token: str | None = None):
        self.tokenizer = tokenizer
        self.eos_token = eos_token
        self.eos_token_id = self._token_id(eos_token)
        self.pad_token_id = self._token_id(pad_token) if pad_token is not None else self.eos_token_id
        self.bos_token = bos_token

    def _token_id(self, token: str) -> int:
        tid = self.tokenizer.convert_tokens_to_ids(token)
        if tid is None or (getattr(self.tokenizer, "unk_token_id", None) == tid and token != self.tokenizer.unk_token):
            raise InputError(f"{self.name}: token {token!r} is not in the tokenizer's vocabulary")
        return int(tid)

    def prompt_text(self, prompt: str) -> str:
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt_ids(self, prompt: str) -> list[int]:
        return self.encode(self.prompt_text(prompt))

    def response_ids(self, response: str, add_eos: bool = True) -> list[int]:
        ids = self.encode(response)
        return ids + [self.eos_token_id] if add_eos else ids

    def decode(self, ids: Sequence[int]) -> str:
        """Decode generated ids, stopping at the first end-of-turn token and dropping padding."""
        out = []
        for t in ids:
            t = int(t)
            if t == self.eos_token_id:
                break
            out.append(t)
        return self.tokenizer.decode(out, skip_special_tokens=True).strip()

    def describe(self) -> dict[str, Any]:
        return {"format": self.name, "eos": self.eos_token, "example": self.prompt_text("{prompt}")}


class TemplateChat(ChatFormat):
    """A fixed string template with a ``{prompt}`` slot (used by the organisms)."""

    def __init__(self, tokenizer: Any, template: str, eos_token: str, pad_token: str | None = None, name: str = "template"):
        if "{prompt}" not in template:
            raise InputError(f"chat template {template!r} has no {{prompt}} slot")
        self.name = name
        self.template = template
        super().__init__(tokenizer, eos_token=eos_token, pad_token=pad_token)

    def prompt_text(self, prompt: str) -> str:
        return self.template.replace("{prompt}", prompt)


class HFChatTemplate(ChatFormat):
    """The model's own Jinja chat template (``tokenizer.apply_chat_template``)."""

    def __init__(self, tokenizer: Any, eos_token: str | None = None, system_prompt: str | None = None, name: str = "hf-chat-template"):
        if not getattr(tokenizer, "chat_template", None):
            raise InputError("this tokenizer has no chat_template; use TemplateChat with an explicit template instead")
        self.name = name
        self.system_prompt = system_prompt
        super().__init__(tokenizer, eos_token=eos_token or tokenizer.eos_token, pad_token=tokenizer.pad_token)

    def prompt_text(self, prompt: str) -> str:
        messages = []
        if self.system_prompt is not None:
            messages.append({"role": "system", "content": self.system_prompt})
        messages.append({"role": "user", "content": prompt})
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


@dataclass
class TokenBatch:
    """A padded batch. ``labels`` equals ``tokens`` on response tokens and is -100 elsewhere,
    so ``CE(logits[:, :-1], labels[:, 1:])`` trains on the response only."""

    tokens: Int[Tensor, "batch pos"]
    attention_mask: Int[Tensor, "batch pos"]
    labels: Int[Tensor, "batch pos"]
    prompt_lengths: list[int]
    padding_side: str

    @property
    def response_mask(self) -> Bool[Tensor, "batch pos"]:
        return self.labels != IGNORE_INDEX

    def to(self, device: str | torch.device) -> TokenBatch:
        return TokenBatch(self.tokens.to(device), self.attention_mask.to(device), self.labels.to(device), self.prompt_lengths, self.padding_side)

    def __len__(self) -> int:
        return self.tokens.shape[0]


def encode_batch(
    chat: ChatFormat,
    prompts: Sequence[str],
    responses: Sequence[str | None] | None = None,
    max_len: int | None = None,
    padding_side: Literal["left", "right"] = "right",
    source: str = "batch",
) -> TokenBatch:
    """Tokenise prompts (and responses, when given) into one padded batch.

    Raises ValueError naming the record when a sequence is longer than ``max_len`` (the model
    context): truncating a safety prompt silently would change what is being measured.
    """
    if len(prompts) == 0:
        raise InputError(f"{source}: cannot encode an empty batch")
    if responses is None:
        responses = [None] * len(prompts)
    if len(responses) != len(prompts):
        raise InputError(f"{source}: {len(prompts)} prompts but {len(responses)} responses")
    seqs, lab_seqs, plens = [], [], []
    for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        pid = chat.prompt_ids(p)
        rid = chat.response_ids(r) if r is not None else []
        ids = pid + rid
        if max_len is not None and len(ids) > max_len:
            what = "prompt + response" if r is not None else "prompt"
            raise InputError(
                f"{source}: record {i} has {len(ids)} tokens ({what}), longer than the model context of {max_len}; "
                "shorten it or drop it from the set"
            )
        seqs.append(ids)
        lab_seqs.append([IGNORE_INDEX] * len(pid) + rid)
        plens.append(len(pid))
    width = max(len(s) for s in seqs)
    B = len(seqs)
    tokens = torch.full((B, width), chat.pad_token_id, dtype=torch.long)
    attn = torch.zeros((B, width), dtype=torch.long)
    labels = torch.full((B, width), IGNORE_INDEX, dtype=torch.long)
    for b, (s, lab) in enumerate(zip(seqs, lab_seqs, strict=True)):
        n = len(s)
        sl = slice(width - n, width) if padding_side == "left" else slice(0, n)
        tokens[b, sl] = torch.tensor(s, dtype=torch.long)
        attn[b, sl] = 1
        labels[b, sl] = torch.tensor(lab, dtype=torch.long)
    return TokenBatch(tokens, attn, labels, plens, padding_side)


def iter_batches(
    chat: ChatFormat,
    data: PromptSet,
    batch_size: int,
    max_len: int | None = None,
    padding_side: Literal["left", "right"] = "right",
    with_responses: bool = True,
) -> Iterator[TokenBatch]:
    """Batches in order over a PromptSet (shuffle the set first for training)."""
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    data.require_nonempty()
    if with_responses and any(r is None for r in data.responses):
        missing = sum(r is None for r in data.responses)
        raise InputError(f"{data.name}: {missing} records have no response; training needs target responses")
    for i in range(0, len(data), batch_size):
        chunk = data[i : i + batch_size]
        yield encode_batch(
            chat,
            chunk.prompts,
            chunk.responses if with_responses else None,
            max_len=max_len,
            padding_side=padding_side,
            source=f"{data.name}[{i}:{i + len(chunk)}]",
        )
