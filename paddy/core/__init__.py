"""The bottom layer: errors, atomic writes, the training config and plans, the runtime, the run-folder contract."""
