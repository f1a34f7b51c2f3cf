import pytest
import torch

from safecircuits.data.chat import IGNORE_INDEX, encode_batch, iter_batches
from safecircuits.data.promptset import PromptSet
from safecircuits.models.organisms import build_tokenizer, organism_chat


@pytest.fixture(scope="module")
def chat():
    return organism_chat(build_tokenizer())


def test_labels_mask_prompt_and_padding(chat):
    b = encode_batch(chat, ["how do i bake the bread ?", "tell me how to cook the soup ."], ["sure .", "okay . yes"], padding_side="right")
    for i, (p, r) in enumerate([("how do i bake the bread ?", "sure ."), ("tell me how to cook the soup .", "okay . yes")]):
        n_prompt = len(chat.prompt_ids(p))
        n_resp = len(chat.response_ids(r))
        row = b.labels[i]
        assert (row[:n_prompt] == IGNORE_INDEX).all()
        assert row[n_prompt : n_prompt + n_resp].tolist() == chat.response_ids(r)
        assert (row[n_prompt + n_resp :] == IGNORE_INDEX).all()
        assert b.attention_mask[i].sum() == n_prompt + n_resp
    # the response ends with EOS, and that EOS is a training target
    assert chat.eos_token_id in b.labels[0].tolist()


def test_left_padding_puts_content_at_the_end(chat):
    b = encode_batch(chat, ["how do i bake the bread ?", "bake"], padding_side="left")
    assert b.attention_mask[1, -1] == 1 and b.attention_mask[1, 0] == 0
    assert b.tokens[1, 0] == chat.pad_token_id


def test_too_long_for_context_names_record(chat):
    with pytest.raises(ValueError, match="record 1 has .* longer than the model context of 8"):
        encode_batch(chat, ["bake", "how do i bake the bread ? " * 3], max_len=8)


def test_iter_batches_requires_responses(chat):
    ps = PromptSet.from_prompts(["how do i bake the bread ?"], label="harmless")
    with pytest.raises(ValueError, match="no response"):
        list(iter_batches(chat, ps, 4))
    assert len(list(iter_batches(chat, ps, 4, with_responses=False))) == 1


def test_decode_stops_at_eos(chat):
    ids = chat.encode("sure . to bake") + [chat.eos_token_id] + chat.encode("bomb gun")
    assert chat.decode(torch.tensor(ids).tolist()) == "sure . to bake"
