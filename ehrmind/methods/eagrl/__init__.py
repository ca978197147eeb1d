"""EAG-RL (Fang et al., arXiv 2508.13579, AAAI 2026): expert-attention-guided RL for EHR prediction.

format  the prompt (subquestion decomposition) and the answer parser
reward  R = λ·R_cls + (1−λ)·R_att (paper) or the authors' code weighting, every unpublished constant a key
clip    GRPO with the entropy-aware adaptive upper clip (a TRL GRPOTrainer subclass)
mcts    stage 1: MCTS over reasoning steps on an abstract batched sampler, writing SFT rows
"""
