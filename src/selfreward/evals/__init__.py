"""Offline benchmarks of a model's answers: rule-checked (IFEval) and judged (MT-Bench, Vicuna, AlpacaEval-style)."""
