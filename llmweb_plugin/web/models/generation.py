"""Generation helpers of the local chat model: where an answer's first sentence ends (and a
``transformers`` stopping criterion for it), one prompt read once for n sampled answers, and
user stop strings."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["MIN_SENTENCE_CHARS", "first_sentence_end", "generate_rows", "sentence_stopper",
           "truncate_at_stop"]


#: A sentence end: ``.``, ``!`` or ``?`` (repeats allowed), closing quotes or brackets, then white
#: space. The white space is required so that ``3.5`` or ``$1.2 trillion`` is not cut.
_SENTENCE_END = re.compile(r"[.!?]+[\"'\u201d\u2019)\]]*(?=\s)")
#: Words whose trailing period is not a sentence end.
_ABBREVIATIONS = frozenset({"e.g", "i.e", "etc", "vs", "mr", "mrs", "ms", "dr", "st", "u.s",
                            "u.k", "approx", "inc"})
#: A sentence end within the first characters of an answer does not count ("1. ", "Sure! ").
MIN_SENTENCE_CHARS = 16


def first_sentence_end(text: str, *, at_end: bool = False,
                       min_chars: int = MIN_SENTENCE_CHARS) -> int | None:
    """Index just past the first sentence's end in ``text``, or None if no sentence ended yet.

    A sentence ends at ``.``, ``!`` or ``?`` (with any closing quotes or brackets) followed by
    white space, at least ``min_chars`` characters into the (left-stripped) text, and not after
    a common abbreviation (``e.g.``, ``U.S.``...). With ``at_end=True`` the end of ``text``
    also counts as white space (the answer is complete).

    Args:
        text: the text generated so far.
        at_end: whether ``text`` is complete.
        min_chars: sentence ends before this many characters are ignored.

    Returns:
        The cut position in ``text`` (exclusive), or None.

    Example:
        >>> t = "Bitcoin may reach $1.5 trillion. Or not."
        >>> t[: first_sentence_end(t)]
        'Bitcoin may reach $1.5 trillion.'
        >>> first_sentence_end("Bitcoin will keep rising.") is None
        True
        >>> first_sentence_end("Bitcoin will keep rising.", at_end=True)
        25
    """
    lead = len(text) - len(text.lstrip())
    probe = text + " " if at_end else text
    for m in _SENTENCE_END.finditer(probe, lead + min_chars):
        word = probe[lead:m.start()].rsplit(None, 1)[-1].lower() if m.start() > lead else ""
        if m.group().startswith(".") and word.lstrip("(\"'") in _ABBREVIATIONS:
            continue
        return min(m.end(), len(text))
    return None


def sentence_stopper(tokenizer: Any, prompt_len: int, min_chars: int) -> Any:
    """A ``transformers`` stopping criterion: each row stops after its first sentence."""
    from transformers import StoppingCriteria

    class _FirstSentence(StoppingCriteria):  # type: ignore[misc]
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            import torch

            done = [
                first_sentence_end(
                    tokenizer.decode(row[prompt_len:], skip_special_tokens=True),
                    min_chars=min_chars,
                ) is not None
                for row in input_ids.tolist()
            ]
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return _FirstSentence()


def generate_rows(lm: Any, enc: Mapping[str, Any], gen_kwargs: dict[str, Any]) -> Any:
    """``lm.generate`` for one prompt, reading the prompt once for all its sampled answers.

    ``generate(num_return_sequences=n)`` copies the prompt n times and runs the model over all
    n copies; here the prompt (but its last token) is read once, its key/value cache is copied
    to n rows and the one ``generate`` call continues from there: the same n samples at a fraction of the
    prompt's cost (the prompt is most of the tokens a web step reads).
    """
    n = int(gen_kwargs.get("num_return_sequences") or 1)
    ids = enc["input_ids"]
    if n == 1 or ids.shape[1] < 2:
        return lm.generate(**enc, **gen_kwargs)
    from transformers import DynamicCache

    mask = enc["attention_mask"]
    cache = DynamicCache(config=lm.config)
    lm(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], cache=cache, use_cache=True)
    # generate copies the prompt's tensors to n rows itself, but not a cache object
    cache.batch_repeat_interleave(n)
    return lm.generate(**enc, cache=cache, **gen_kwargs)


def truncate_at_stop(text: str, stop: Sequence[str] | None) -> tuple[str, bool]:
    if not stop:
        return text, False
    cuts = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    if not cuts:
        return text, False
    return text[: min(cuts)], True
