"""`make bench`: how fast each style trains and the pipeline runs, against a peer and the limit.

figures (the arithmetic, pure), timing (the styles', the peer's and the limit's measurements),
stages (the pipeline's), tables (the printed tables and docs/bench.md), __main__ (the command).
"""
