"""Generation settings of the local models: one sentence per answer, the prompt read once.

Fast tests use a tiny random Llama model built from a config (no weights to load); the one
real-model test is marked slow.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from llmweb_plugin.web.models import generation  # noqa: E402
from llmweb_plugin.web.models import (  # noqa: E402
    MIN_SENTENCE_CHARS,
    first_sentence_end,
    local_agents,
    local_chat_model,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Bitcoin may reach $1.5 trillion by 2030. Or not.",
         "Bitcoin may reach $1.5 trillion by 2030."),
        ("Prices rise, e.g. in the U.S. market, fast! Next one.",
         "Prices rise, e.g. in the U.S. market, fast!"),
        ('He said "Bitcoin will win." Then he left.', 'He said "Bitcoin will win."'),
        ("Will Bitcoin survive the decade?? Maybe.", "Will Bitcoin survive the decade??"),
        ("  Leading space is not counted here. Second.", "  Leading space is not counted here."),
    ],
)
def test_first_sentence_end_cuts_after_the_first_sentence(text: str, expected: str) -> None:
    assert text[: first_sentence_end(text)] == expected


def test_first_sentence_end_ignores_early_ends_and_waits_for_white_space() -> None:
    # "Sure! " and "1. " fall within the first MIN_SENTENCE_CHARS characters
    assert MIN_SENTENCE_CHARS == 16
    text = "Sure! Bitcoin will keep growing. More."
    assert text[: first_sentence_end(text)] == "Sure! Bitcoin will keep growing."
    assert first_sentence_end("1. Bitcoin grows") is None
    # no white space after the period yet: "3." may still become "3.5"
    assert first_sentence_end("Bitcoin could rise to 3.") is None
    assert first_sentence_end("Bitcoin could rise to 3.", at_end=True) == 24
    assert first_sentence_end("") is None
    assert first_sentence_end("", at_end=True) is None
    assert first_sentence_end("no sentence end at all", at_end=True) is None


def test_stop_at_sentence_end_is_validated_and_local_agents_default_on() -> None:
    with pytest.raises(TypeError, match="stop_at_sentence_end must be True or False"):
        local_chat_model(stop_at_sentence_end="yes")  # type: ignore[arg-type]
    chat = local_chat_model()
    assert chat.stop_at_sentence_end is False
    with pytest.raises(TypeError, match="stop_at_sentence_end must be True or False"):
        chat._resolve({"stop_at_sentence_end": 1})
    agents = local_agents(3)
    assert [a.stop_at_sentence_end for a in agents.values()] == [True, True, True]
    assert not any(a.stop_at_sentence_end for a in local_agents(
        2, stop_at_sentence_end=False).values())


def _tiny_llama() -> object:
    config = transformers.LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
        bos_token_id=1, eos_token_id=2, pad_token_id=0)
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config).eval()


@pytest.mark.parametrize("n", [1, 4])
def test_shared_prompt_generation_matches_plain_generate(n: int) -> None:
    """The prompt read once and its cache copied to n rows gives generate's exact n samples."""
    lm = _tiny_llama()
    ids = torch.tensor([[1, 5, 9, 13, 17, 21, 25, 29, 33, 37]])
    enc = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    kw = {"max_new_tokens": 12, "do_sample": True, "temperature": 1.0, "top_p": 0.95,
          "num_return_sequences": n, "pad_token_id": 0, "eos_token_id": [2]}
    with torch.inference_mode():
        torch.manual_seed(7)
        plain = lm.generate(**enc, **kw)
        torch.manual_seed(7)
        shared = generation.generate_rows(lm, enc, dict(kw))
    assert shared.shape == plain.shape == (n, 10 + 12)
    assert shared.tolist() == plain.tolist()
    # the samples differ from each other (the rows really are separate samples)
    if n > 1:
        assert len({tuple(r) for r in shared[:, 10:].tolist()}) > 1


@pytest.mark.slow
def test_real_model_stops_each_answer_after_its_first_sentence() -> None:
    chat = local_chat_model(seed=3, stop_at_sentence_end=True, max_new_tokens=48)
    prompt = "Please provide EXACTLY one concise sentence about the future prospects of Bitcoin."
    from langchain_core.messages import HumanMessage

    res = chat.generate([[HumanMessage(content=prompt)]], n=4)
    gens = res.generations[0]
    assert len(gens) == 4
    for g in gens:
        text = g.text
        end = first_sentence_end(text, at_end=True)
        if g.generation_info["finish_reason"] == "stop":
            assert end == len(text)  # one sentence, nothing after it
        # at most one sentence end inside the answer
        assert end is None or first_sentence_end(text[end:], at_end=True) is None
        assert g.message.usage_metadata["output_tokens"] <= 48
