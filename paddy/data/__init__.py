"""A competition folder: its facts, reading, checking, synthetic samples, resized caches and DataLoaders."""
