"""Safety evaluation: batched greedy generation, refusal judges, ASR, utility, KL."""
