"""The demo arms of both proxies and the hand-written texts the web's demo arms use."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .gmm import GMMArm
from .web import HooksFactory

if TYPE_CHECKING:  # pragma: no cover
    from ..web import WebHook

__all__ = ["DEMO_EXTERNAL_POSTS", "DEMO_HUMAN_POSTS", "DEMO_PERSONAS", "DEMO_QUERY_TEMPLATES",
           "default_gmm_arms", "default_web_arms"]

#: Hand-written posts (for llmweb) standing in for a stream of fresh human data about crypto
#: currencies, used by the demo injection arm. Bring your own with ``--external FILE``.
DEMO_EXTERNAL_POSTS: tuple[str, ...] = (
    "My local coffee shop stopped accepting Bitcoin because the card terminal was simpler.",
    "I moved my savings out of an exchange after reading its terms of service twice.",
    "Our credit union asked members whether they want crypto custody; most said no.",
    "A friend in Lagos uses stablecoins to pay suppliers because dollars are hard to get.",
    "The tax form for my few crypto trades took longer than the rest of my return.",
    "Miners near the dam sell power back to the grid in summer when prices spike.",
    "I lost a seed phrase in a house move and the coins are simply gone.",
    "The museum gift shop sells Bitcoin-themed socks now, which feels like a top signal.",
    "Our city council debated heating a public pool with waste heat from a mining rig.",
    "A retired teacher in my street buys ten dollars of Bitcoin every Friday, ignoring charts.",
    "The hardware wallet firmware update bricked nothing, but the instructions were awful.",
    "Freelancers on my team asked to be paid in USDC; accounting said absolutely not.",
    "Chargebacks are impossible with crypto, which my online store both loves and fears.",
    "An auditor told me half of the small tokens she looked at had no working product.",
    "The farmers' market tried a QR code for Lightning tips and got three payments all day.",
    "Ransomware gangs still demand Bitcoin, and insurers have started to refuse those claims.",
    "My grandmother asked whether Bitcoin is a company; honestly it was a fair question.",
    "I watched a developer conference where half the talks were about stopping scams.",
    "Energy researchers say flexible mining load can help balance wind farms at night.",
    "A landlord in my town accepts rent in Ether but prices it in euros every month.",
    "Students at the local college run a node in the library basement for a class project.",
    "Exchange outages during big price moves are why I keep a little cash on two platforms.",
    "The bank app added a crypto tab, and support cannot answer a single question about it.",
    "A charity I volunteer for got a large crypto donation and sold it within the hour.",
    "Gas fees on my last NFT transfer were more than the NFT was worth.",
    "Court filings from the exchange collapse read like a thriller about missing spreadsheets.",
    "The village in El Salvador that adopted Bitcoin early still mostly uses dollars day to day.",
    "I tried to buy a pizza with crypto and the restaurant converted it to fiat instantly.",
    "Cold storage feels safe until you realise your heirs have no idea how to use it.",
    "A podcast guest argued that Bitcoin's price is mostly driven by global liquidity cycles.",
    "Our payroll provider now offers crypto salaries, but nobody at the company opted in.",
    "The mining pool I joined pays out daily, which makes the small rewards feel real.",
    "Airport lounges started advertising crypto cards; the cashback is paid in tokens.",
    "An elderly neighbour was scammed by a fake exchange that looked exactly like a real one.",
    "Developers keep shipping layer-two networks faster than users can learn their names.",
    "A historian compared the crypto boom with the railway mania of the 1840s.",
)

#: Hand-written replacements a demo reviewer writes for the posts it samples.
DEMO_HUMAN_POSTS: tuple[str, ...] = (
    "Nobody knows where Bitcoin goes next; I keep it small and boring.",
    "I use crypto for one thing: sending money home cheaply. The rest is noise to me.",
    "Bitcoin's future depends more on regulation than on technology at this point.",
    "I sold my coins to pay for a car and I do not regret it.",
    "The price charts are exciting, but my bank still does everything I need.",
    "If Bitcoin survives another decade it will be because people stopped hyping it.",
    "My brother mines in his garage; the electricity bill is the real story.",
    "Crypto taught me more about fraud prevention than any course I took.",
    "I think central bank digital currencies will crowd out most coins.",
    "Bitcoin looks like digital gold to me: useless for coffee, fine for savings.",
    "Honestly I lost interest after the last crash; too stressful.",
    "Fees and volatility are why my shop stopped taking crypto payments.",
    "Young people at my work treat Bitcoin like a lottery ticket.",
    "Self-custody is great until you forget your password.",
    "The technology is clever, but the culture around it puts people off.",
    "I expect a few big coins to survive and thousands to vanish.",
    "Stablecoins are the only part of crypto my family actually uses.",
    "Regulators arrived late, but their rules may finally make this safer.",
    "I hold some Bitcoin as insurance against my own country's currency.",
    "Every cycle the same promises come back with new names.",
    "Mining could use stranded energy, but it can also keep old coal plants running.",
    "I would rather own index funds; crypto is a side bet at most.",
    "My pension fund bought an ETF, so I own Bitcoin without ever touching it.",
    "The best thing about Bitcoin is that nobody can stop you from using it.",
)

#: Personas for the demo prompt-variation arm.
DEMO_PERSONAS: tuple[str, ...] = (
    "You are a cautious retail investor who has lost money before.",
    "You are an energy engineer who thinks about power grids.",
    "You are a small-business owner who cares about fees and speed.",
    "You are an economic historian who compares today with past bubbles.",
    "You are a software developer who builds payment apps.",
)

#: Query templates (paraphrases) for the demo prompt-variation arm.
DEMO_QUERY_TEMPLATES: tuple[str, ...] = (
    "{query}",
    "In your own words and from your own experience: {query}",
    "{query} Say something the posts above do not already say.",
)


def default_gmm_arms(*, injection: int = 9, variation: float = 0.5,
                     human_rate: float = 0.5) -> dict[str, GMMArm]:
    """The demo arms of the GMM proxy: none, injection, variation, human (analogues).

    The defaults are for the Fig. 4 setting (3 agents x L = 3 points per step): 9 external
    points per step and a human rate of 0.5 both halve the synthetic share of new data.
    """
    return {
        "none": GMMArm(),
        "injection": GMMArm(injection=injection),
        "variation": GMMArm(variation=variation),
        "human": GMMArm(human_rate=human_rate),
    }


def default_web_arms(
    n_agents: int,
    *,
    review_dir: str | os.PathLike[str],
    external: Sequence[str] | str | os.PathLike[str] | None = None,
    human_posts: Sequence[str] | None = None,
    human_rate: float = 0.5,
    personas: Sequence[str] = DEMO_PERSONAS,
    query_templates: Sequence[str] = DEMO_QUERY_TEMPLATES,
    temperatures: Sequence[float] = (0.6, 0.9, 1.2),
) -> tuple[dict[str, HooksFactory], dict[str, str]]:
    """The demo arms of the web proxy and their descriptions.

    - ``none``: no hook;
    - ``injection``: :class:`~llmweb_plugin.web.mitigations.ExternalInjection` of ``n_agents``
      documents per step (half the new web documents), from ``external`` (default
      :data:`DEMO_EXTERNAL_POSTS`, sequential);
    - ``variation``: :class:`~llmweb_plugin.web.mitigations.PromptVariation` rotating
      ``personas``, ``query_templates`` and ``temperatures``;
    - ``human``: :class:`~llmweb_plugin.web.mitigations.HumanSampling` at ``human_rate`` into a
      JSONL queue per run under ``review_dir``, with a reviewer that replaces every sampled post
      by the next of ``human_posts`` (default :data:`DEMO_HUMAN_POSTS`).

    Returns:
        ``(arms, notes)``: ``{name: seed -> hooks}`` and ``{name: description}``.
    """
    from ..web.mitigations import ExternalInjection, HumanSampling, JsonlSink, PromptVariation

    ext = DEMO_EXTERNAL_POSTS if external is None else external
    pool = tuple(DEMO_HUMAN_POSTS if human_posts is None else human_posts)
    if not pool:
        raise ValueError("human_posts is empty")
    rdir = Path(review_dir)

    def injection(seed: int) -> list[WebHook]:
        return [ExternalInjection(ext, per_step=n_agents)]

    def variation(seed: int) -> list[WebHook]:
        return [PromptVariation(personas=personas, query_templates=query_templates,
                                temperature_schedule=temperatures)]

    def human(seed: int) -> list[WebHook]:
        path = rdir / f"review-s{seed}.jsonl"
        if path.exists():
            path.unlink()
        return [HumanSampling(human_rate, sink=JsonlSink(path),
                              reviewer=lambda item: pool[item.seq % len(pool)])]

    arms: dict[str, HooksFactory] = {"none": lambda seed: [], "injection": injection,
                                     "variation": variation, "human": human}
    notes = {
        "none": "no mitigation",
        "injection": f"ExternalInjection: {n_agents} fresh documents per step",
        "variation": f"PromptVariation: {len(personas)} personas, {len(query_templates)} query "
                     f"templates, temperatures {list(temperatures)} (rotated)",
        "human": f"HumanSampling: rate {human_rate:g}, every sampled post replaced by a "
                 "hand-written one (kind human)",
    }
    return arms, notes
