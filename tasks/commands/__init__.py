"""CLI command groups, one module each; every module has `register(subcommands)`.

Each registered sub-parser sets `func=callable(args) -> exit status`. Heavy imports stay inside the
callables so `hashtagger --help` is instant.
"""
