"""Collaborative filtering (the fastai book's chapter 8): data, models, fast training, evaluation, use.

Modules: data (loaders, splits, crosstab), models (the book's, AutoRec, SVD++, Blend), config (CollabConfig and its
fast and book recipes), train (fit_collab), blend (fit_blend, blend_weights), fitted (save/load), evaluate,
interpret, recommend, run (`paddy collab` end to end). Each module imports what it uses at its top
(torch, fastai, pandas): import them from the CLI lazily.
"""
