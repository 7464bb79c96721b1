"""What reads the pipeline's outputs afterwards: the report, the noise and its sweep, the bench,
the equivalence proof, machines compared. Tools import the pipeline, never the other way round.
"""
