"""Daily multi-scenario retrieval (SASS): data, models, training, FAISS indexes, evaluation.

OpenMP's default is to spin while waiting for work. When two training processes share the machine's
cores (parallel mapped Airflow tasks, a benchmark next to a test run) spinning threads starve each other,
and a bounded spin (GOMP_SPINCOUNT) does not prevent it: a step becomes many times slower. So passive waiting
is the default for every process that imports this package before torch. Its price is paid by a process alone
with 2 threads on small layers, where a second passive thread costs more than it gives, which is why
params.yaml runs the stages with ``train.threads: 1`` (the measurements: docs/lab/notes.md and
docs/lab/params-history.md, "train.threads").
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
