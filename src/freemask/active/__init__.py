"""Adversarial iterative active learning (paper §3.3, Algorithm 1): score, select, retrain."""
