"""The seed web ``A(0)`` of the paper's experiment: 20 short posts about crypto-currencies.

The paper (arXiv 2506.15690, section 4) starts its LLM web from 20 short human posts about crypto
currencies, 7 positive, 7 neutral and 6 negative; the posts themselves are not published. These
20 were written for llmweb with the same split and a similar length (one or two sentences, like
a forum or social-media post); each carries its sentiment label.

Example:
    >>> from llmweb_plugin.web import CRYPTO_SEEDS, seed_texts
    >>> len(CRYPTO_SEEDS), sorted({s.label for s in CRYPTO_SEEDS})
    (20, ['negative', 'neutral', 'positive'])
    >>> [sum(s.label == lab for s in CRYPTO_SEEDS) for lab in ("positive", "neutral", "negative")]
    [7, 7, 6]
    >>> seed_texts()[0] == CRYPTO_SEEDS[0].text
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["CRYPTO_SEEDS", "SeedPost", "seed_texts"]


@dataclass(frozen=True, kw_only=True)
class SeedPost:
    """One seed document with its label.

    Attributes:
        text: the post.
        label: its sentiment, ``positive``, ``neutral`` or ``negative``.
    """

    text: str
    label: str


def _posts(label: str, texts: Sequence[str]) -> tuple[SeedPost, ...]:
    return tuple(SeedPost(text=t, label=label) for t in texts)


CRYPTO_SEEDS: tuple[SeedPost, ...] = (
    *_posts("positive", (
        "Bitcoin just closed another week above its old high; institutions keep buying and "
        "I think we are still early.",
        "Spot ETFs made Bitcoin a one-click buy for pension funds. That demand is not going "
        "away.",
        "Ethereum's fees dropped so much after the last upgrade that I finally use it for "
        "everyday payments.",
        "Lightning payments settled in under a second for me today. Bitcoin as money is "
        "finally practical.",
        "Every halving cuts new supply in half, and every cycle so far has ended higher than "
        "the last.",
        "Stablecoins now move more value across borders than some card networks. Crypto "
        "rails are here to stay.",
        "My remittances to family abroad cost cents with crypto instead of the 8% the bank "
        "charged.",
    )),
    *_posts("neutral", (
        "Bitcoin's hash rate hit a new record this month while the price moved sideways.",
        "The SEC is reviewing three more crypto ETF applications; a decision is expected "
        "next quarter.",
        "About 19.8 million of the 21 million bitcoins have been mined so far.",
        "Ethereum switched from proof of work to proof of stake in 2022.",
        "Crypto trading volume this week was roughly in line with the monthly average.",
        "Several central banks are testing digital currencies, which work differently from "
        "Bitcoin.",
        "Exchange reserves of Bitcoin have been slowly declining for two years.",
    )),
    *_posts("negative", (
        "Another exchange froze withdrawals today. Not your keys, not your coins, and most "
        "people still do not get it.",
        "Bitcoin mining burns as much electricity as a mid-sized country for a few "
        "transactions per second.",
        "Most altcoins from the last bull run are down more than 90% and never came back.",
        "Crypto is a casino dressed up as technology; the only real use case is speculation.",
        "Rug pulls and phishing scams drained millions from retail wallets again this month.",
        "Regulators could ban self-custody or tax transfers, and the whole thesis collapses.",
    )),
)


def seed_texts(seeds: Sequence[SeedPost] = CRYPTO_SEEDS) -> list[str]:
    """The texts of ``seeds`` (default: the 20 shipped crypto posts), in order."""
    return [s.text for s in seeds]
