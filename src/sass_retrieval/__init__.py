"""Daily multi-scenario retrieval (SASS): data, models, training, FAISS indexes, evaluation.

OpenMP's default is to spin while waiting for work. When two training processes share the machine's
cores (parallel mapped Airflow tasks, a benchmark next to a test run) spinning threads starve each other:
measured here, a pretraining epoch went from 1 s to 71 s. Passive waiting costs nothing when a process
is alone, so it is the default for every process that imports this package before torch.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
