"""Run a DAG built inside a test with ``dag.test()``, against the emulator.

``dag.test()`` in Airflow 3 refuses a DAG that is not serialized in the metadata DB ("the dag is
not serialized"): it only knows DAGs parsed from the DAGs folder. Tests usually build DAGs in
code, so :func:`test_dag` registers the DAG first. Airflow is imported here, not at package
import, so the pytest plugin stays cheap for test sessions that never touch Airflow.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import DAG

BUNDLE = "dags-folder"


def register_dag(dag: DAG) -> None:
    """Write ``dag`` to the metadata DB as Airflow's DAG processor would (a new version if it
    changed). The DB must exist (``airflow db migrate`` once for your test ``AIRFLOW_HOME``)."""
    from airflow import settings
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()  # type: ignore[no-untyped-call]
    if dag.relative_fileloc is None:
        # Parsing sets this from the bundle path; ending a task from a trigger needs it.
        dag.relative_fileloc = Path(dag.fileloc).name
    bag = DagBag(dag_folder=settings.DAGS_FOLDER, collect_dags=False)
    bag.bag_dag(dag)
    sync_bag_to_db(bag, BUNDLE, None)


def test_dag(dag: DAG, **test_kwargs: Any) -> Any:
    """``register_dag(dag)`` then ``dag.test(**test_kwargs)``; returns the finished DagRun."""
    register_dag(dag)
    return dag.test(**test_kwargs)


test_dag.__test__ = False  # type: ignore[attr-defined]  # not a test for pytest to collect
