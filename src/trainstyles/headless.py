"""Imported first by every stage that trains or evaluates, before Keras: those stages draw nothing.

Keras imports matplotlib.pyplot at its own import whenever matplotlib is installed (this project
installs it for `make report`): 0.7-0.9 s of the start of each of the five stages that import
Keras. A None entry in sys.modules makes `import matplotlib` raise ImportError, as if it were
not installed, which Keras expects and handles. Only a stage's own process is affected.
"""

import sys

sys.modules.setdefault("matplotlib", None)
