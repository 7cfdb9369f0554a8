"""The memory probe: peak memory per model and the smallest gradient accumulation that fits a budget."""
