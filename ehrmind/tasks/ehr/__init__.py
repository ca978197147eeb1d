"""Structured-EHR prediction tasks (TJH, MIMIC-IV) for EAG-RL."""
