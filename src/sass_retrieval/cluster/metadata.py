"""What the cluster's Airflow metadata database says about DAGs, runs and task instances, read with plain
SQL: a test or benchmark asks the database itself rather than an API that adds its own delays and login.

The queries use only columns Airflow 3 has had since 3.0 (``dag.is_paused``, ``dag.is_stale``,
``dag_run.state``, ``task_instance``'s and ``task_instance_history``'s hostname, queue, try_number).
"""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

TI_COLUMNS = "task_id, map_index, try_number, state, hostname, queue, start_date, end_date"


class TaskInstanceRow(NamedTuple):
    """One try of one task instance (``map_index`` -1: not mapped). ``hostname``: where it ran (``w0``,
    ``w1``... on the cluster's workers)."""

    task_id: str
    map_index: int
    try_number: int
    state: str | None
    hostname: str | None
    queue: str | None
    start_date: dt.datetime | None
    end_date: dt.datetime | None


def dag_ready(conn, dag_id: str) -> bool:
    """The DAG is parsed (its serialized form stored), not stale and not paused: a trigger will run."""
    with conn.cursor() as cur:
        cur.execute("SELECT d.is_paused FROM dag d WHERE d.dag_id = %s AND NOT d.is_stale "
                    "AND EXISTS (SELECT 1 FROM serialized_dag s WHERE s.dag_id = d.dag_id)", (dag_id,))
        row = cur.fetchone()
    return row is not None and not row[0]


def run_state(conn, dag_id: str, run_id: str) -> str | None:
    with conn.cursor() as cur:
        cur.execute("SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s", (dag_id, run_id))
        row = cur.fetchone()
    return row[0] if row else None


def task_instances(conn, dag_id: str, run_id: str, *, history: bool = False) -> list[TaskInstanceRow]:
    """The run's task instances (their latest try); with ``history`` every earlier try too (a retried task
    then has one row per try, in try order)."""
    query = f"SELECT {TI_COLUMNS} FROM task_instance WHERE dag_id = %s AND run_id = %s"
    params: tuple = (dag_id, run_id)
    if history:
        query += f" UNION ALL SELECT {TI_COLUMNS} FROM task_instance_history WHERE dag_id = %s AND run_id = %s"
        params += (dag_id, run_id)
    with conn.cursor() as cur:
        cur.execute(f"SELECT * FROM ({query}) AS tries ORDER BY task_id, map_index, try_number", params)
        return [TaskInstanceRow(*row) for row in cur.fetchall()]


def return_values(conn, dag_id: str, run_id: str) -> dict[tuple[str, int], object]:
    """(task_id, map_index) -> the value the task instance returned (its ``return_value`` XCom; JSONB, which
    psycopg2 hands back decoded)."""
    with conn.cursor() as cur:
        cur.execute("SELECT task_id, map_index, value FROM xcom WHERE dag_id = %s AND run_id = %s "
                    "AND key = 'return_value'", (dag_id, run_id))
        return {(t, m): v for t, m, v in cur.fetchall()}
