"""Kaggle: the official client wrapped, kernel scripts rendered from a plan, the kit shipped as a dataset."""
