"""Harmonization architectures. Each folder holds one model with the same contract (see modeling_harmonization)."""
