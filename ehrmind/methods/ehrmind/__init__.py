"""EHRMind (arXiv 2505.24105): prompts, answer format, reward and the Pass@k gate."""
