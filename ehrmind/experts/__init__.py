"""Expert EHR models: the models whose feature attributions EAG-RL aligns the LLM with (ConCare)."""
