"""The `paddy` command line: one module per verb, each a thin call into the library (imports are lazy here)."""
