"""Collaborative filtering (the fastai book's chapter 8): data, models, fast training, evaluation, use.

Modules: data (loaders, splits, crosstab), models, train (CollabConfig, fit_collab), fitted (save/load),
evaluate, interpret, recommend, run (`paddy collab` end to end). Heavy libraries load when a module is imported.
"""
