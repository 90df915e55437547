"""Orchestration: the Airflow DAG's view of dvc.yaml (:mod:`.dvc_graph`), its tasks (:mod:`.stages`), the
daily run records as git tags (:mod:`.runs`) and the published model as an Airflow Asset (:mod:`.assets`).
"""
