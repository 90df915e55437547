"""Daily multi-scenario retrieval (SASS): data, models, training, FAISS indexes, evaluation.

OpenMP's default is to spin while waiting for work. When two training processes share the machine's
cores (parallel mapped Airflow tasks, a benchmark next to a test run) spinning threads starve each other:
measured here, a pretraining epoch went from 1 s to 71 s, and with a bounded spin (GOMP_SPINCOUNT=100000) a
plain two-tower step went from 24 to 616 ms. So passive waiting is the default for every process that imports
this package before torch. Its price is paid by a process alone with 2 threads on small layers: a SASS
fine-tuning step took 91 ms with 2 passive threads against 47 ms with 1, which is why params.yaml runs the
stages with ``train.threads: 1`` (docs/lab-notes.md, 2026-12-02).
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
