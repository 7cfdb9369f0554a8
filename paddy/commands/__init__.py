"""Subcommands of the `paddy` CLI: each module has `register(subparsers)`; the work lives in the library."""
