"""Collaborative filtering (the fastai book's chapter 8): data, models, fast training, evaluation, use.

Modules: data (loaders, splits, crosstab), models, train (CollabConfig, fit_collab), fitted (save/load),
evaluate, interpret, recommend, run (`paddy collab` end to end). Each module imports what it uses at its top
(torch, fastai, pandas): import them from the CLI lazily.
"""
