"""The two published methods, each in its own package:

- `ehrmind`: EHRMind (arXiv 2505.24105): its prompts, answer format and rule-checked reward,
  and the Pass@k gate that decides whether the SFT warm-up runs before RLVR;
- `eagrl`: EAG-RL (arXiv 2508.13579): its decomposition format, the expert-alignment reward,
  expert-guided MCTS trajectories and the entropy-aware adaptive clip.

What both use (TRL training wrappers, generation backends, tasks, statistics) lives outside.
"""
