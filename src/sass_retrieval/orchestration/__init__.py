"""Orchestration: the Airflow DAG's view of dvc.yaml, and the daily run versions.

- :mod:`.dvc_graph`  resolves dvc.yaml (+ params.yaml) into stages, edges and Airflow task groups; pure
  Python, imported by ``dags/sass_daily.py`` at parse time.
- :mod:`.runs`       what a DAG task does (run a stage's cmd, then record it in dvc.lock under a file lock;
  set the run's window; record the day under ``runs/<YYYYMMDD>/`` and push the DVC cache) and the
  ``sass runs list | restore | diff`` commands.
"""
