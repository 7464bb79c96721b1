"""`make bench`: how fast each style trains and the pipeline runs, against peers and the limit.

figures (the arithmetic, pure), timing (each variant's epochs, timed), limit (the matrix-multiply
limit), dispatches (an epoch's host round trips, counted), jax_peer and torch_peer (the same MLP
in JAX and in PyTorch), stages (the pipeline's), tables (the printed tables and docs/bench.md),
__main__ (the command).
"""
