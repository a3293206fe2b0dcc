"""Batched vs sequential answers from the local SmolLM2 chat model.

One agent step needs L answers to the same prompt. Baseline: L separate calls (n=1 each).
Ours: one call with n=L, i.e. one batched ``model.generate`` (``num_return_sequences=L``).
Both use the same settings (temperature 0.8, top_p 0.95, max_new_tokens=24, seeded). Prints
generated tokens per second of both and the ratio (target >= 2x).

Run by hand (not part of the test suite):

    HF_HUB_OFFLINE=1 python benchmarks/bench_local_model.py [--L 8] [--max-new-tokens 24]
        [--repeats 2] [--threads N] [--model smollm2-135m]

Timings are wall clock on a shared 2-core CPU: run on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROMPT = "Will inflation fall next year? Give your view."


def main() -> None:
    """Run the benchmark and print tokens/s of both modes and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--L", type=int, default=8, help="answers per agent step")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=2, help="rounds of each mode, interleaved")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--model", default="smollm2-135m")
    args = parser.parse_args()

    import torch
    from langchain_core.messages import HumanMessage

    from llmweb_plugin.web.models import local_chat_model

    if args.threads:
        torch.set_num_threads(args.threads)
    chat = local_chat_model(
        args.model,
        system_prompt="You are a sceptical economist. Answer in two sentences.",
        temperature=0.8,
        top_p=0.95,
        max_new_tokens=args.max_new_tokens,
        seed=0,
    )
    loaded = chat.loaded()
    print(
        f"model={args.model} load={loaded.load_seconds:.1f}s "
        f"({'cache' if loaded.from_cache else 'GGUF conversion'}) "
        f"torch threads={torch.get_num_threads()} L={args.L} max_new_tokens={args.max_new_tokens}"
    )
    chat.generate_n(PROMPT, n=2, max_new_tokens=4)  # warm-up

    def run(n_calls: int, n_each: int) -> tuple[int, float]:
        tokens = 0
        start = time.perf_counter()
        for _ in range(n_calls):
            result = chat.generate([[HumanMessage(content=PROMPT)]], n=n_each)
            tokens += sum(g.message.usage_metadata["output_tokens"] for g in result.generations[0])
        return tokens, time.perf_counter() - start

    totals = {"sequential": [0, 0.0], "batched": [0, 0.0]}
    for r in range(args.repeats):
        for mode, (calls, each) in (("sequential", (args.L, 1)), ("batched", (1, args.L))):
            tokens, seconds = run(calls, each)
            totals[mode][0] += tokens
            totals[mode][1] += seconds
            print(
                f"  round {r + 1} {mode:>10}: {tokens:4d} tokens in {seconds:6.2f} s "
                f"= {tokens / seconds:6.1f} tokens/s"
            )
    rate = {mode: tok / sec for mode, (tok, sec) in totals.items()}
    print(f"sequential ({args.L} calls, n=1): {rate['sequential']:.1f} tokens/s")
    print(f"batched    (1 call, n={args.L}):  {rate['batched']:.1f} tokens/s")
    print(f"ratio batched/sequential: {rate['batched'] / rate['sequential']:.2f}x (target >= 2x)")


if __name__ == "__main__":
    main()
