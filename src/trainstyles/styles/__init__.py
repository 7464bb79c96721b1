"""The four training styles, one module each."""
