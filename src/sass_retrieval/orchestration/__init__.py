"""Orchestration: the Airflow DAG's view of dvc.yaml, and the daily run versions.

- :mod:`.dvc_graph`  the stages and edges of dvc.yaml from DVC's own index, collapsed into Airflow task
  groups (one mapped task per foreach), cached as JSON so ``dags/sass_daily.py`` parses without DVC.
- :mod:`.runs`       what a DAG task does (run a stage's cmd, then record it in dvc.lock under a file lock;
  set the run's window; record the day as git tag ``day-YYYYMMDD`` after ``dvc push``) and the
  ``sass runs list | restore | diff | record`` commands on those tags.
- :mod:`.assets`     the published model as the Airflow Asset ``sass_published_model``: the metadata of the
  event ``publish`` emits when it published a version, and the check a consumer DAG runs on it.
"""
