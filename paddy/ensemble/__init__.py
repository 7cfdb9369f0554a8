"""Ensembles of finished run folders: blending, submission checks and the submissions log."""
