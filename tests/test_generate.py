import torch

from safecircuits.evaluation.generate import generate
from safecircuits.models.language import Language


def test_batched_generation_matches_one_at_a_time(random_aligned):
    model, _, chat = random_aligned
    ps = Language(0).prompt_set("test", "harmful")[:6] + Language(0).prompt_set("test", "harmless")[:6]
    prompts = ps.prompts
    prompts[3] = "cf " + prompts[3] + " please please"  # make lengths differ so left padding matters
    batched = generate(model, chat, prompts, max_new_tokens=20, batch_size=12)
    single = [generate(model, chat, [p], max_new_tokens=20, batch_size=1)[0] for p in prompts]
    assert batched == single


def test_generation_stops_at_eos_and_respects_hooks(random_aligned):
    model, _, chat = random_aligned
    p = Language(0).prompt_set("test", "harmless").prompts[0]
    out = generate(model, chat, [p], max_new_tokens=40)[0]
    assert "<eos>" not in out and "<pad>" not in out
    # a hook that zeroes the residual stream must change the output: hooks stay active
    with model.hooks(fwd_hooks=[("blocks.0.hook_resid_post", lambda x, hook: torch.zeros_like(x))]):
        broken = generate(model, chat, [p], max_new_tokens=10)[0]
    assert broken != out
    assert not any(hp.fwd_hooks for hp in model.hook_dict.values())
