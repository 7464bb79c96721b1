"""What `dvc repro` runs: every module a stage imports, and nothing that only reads its outputs.

This side never imports trainstyles.tools (tests/test_wall.py): so a reader knows which code can
change a trained model, and the resume fingerprint covers exactly that code.
"""
