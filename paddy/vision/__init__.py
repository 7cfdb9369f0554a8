"""Training a timm model through fastai: learner, schedule, checkpoints, predictions, multi-target, runs."""
