"""Run a DAG built inside a test with ``dag.test()``, against the emulator.

``dag.test()`` in Airflow 3 refuses a DAG that is not serialized in the metadata DB ("the dag is
not serialized"): it only knows DAGs parsed from the DAGs folder. Tests usually build DAGs in
code, so :func:`test_dag` registers the DAG first, the way this Airflow's DAG processor would.
Airflow 2 runs the DAG object it is given, but a trigger that ends its task (``TaskSuccessEvent``)
reads the DAG's file from its DB row, which only the DAG processor writes. Airflow is imported
here, not at package import, so the pytest plugin stays cheap for test sessions that never touch
Airflow.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import DAG

BUNDLE = "dags-folder"


def register_dag(dag: DAG) -> None:
    """Write ``dag`` to the metadata DB as Airflow's DAG processor would (a new version if it
    changed). The DB must exist (``airflow db migrate`` once for your test ``AIRFLOW_HOME``)."""
    from airflow import settings

    from dify_provider.version_compat import AIRFLOW_V_3_0_PLUS, AIRFLOW_V_3_1_PLUS, AIRFLOW_V_3_2_PLUS

    if not AIRFLOW_V_3_0_PLUS:
        # Airflow 2: the serialized DAG and the DagModel row its DAG processor writes (without the
        # webserver's per-DAG permissions); a DAG that does not serialize raises here.
        from airflow.models.serialized_dag import SerializedDagModel
        from airflow.utils.session import create_session

        with create_session() as session:
            SerializedDagModel.write_dag(dag, session=session)  # type: ignore[call-arg, arg-type]  # Airflow 2
            type(dag).bulk_write_to_db([dag], session=session)  # type: ignore[attr-defined]  # Airflow 2
        return
    from airflow.dag_processing.bundles.manager import DagBundlesManager

    DagBundlesManager().sync_bundles_to_db()  # type: ignore[no-untyped-call]
    if dag.relative_fileloc is None:
        # Parsing sets this from the bundle path; ending a task from a trigger needs it.
        dag.relative_fileloc = Path(dag.fileloc).name
    if AIRFLOW_V_3_2_PLUS:
        from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    else:
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

        if AIRFLOW_V_3_1_PLUS:
            from airflow.models.dagbag import sync_bag_to_db  # type: ignore[no-redef]
    bag = DagBag(dag_folder=settings.DAGS_FOLDER, collect_dags=False)
    bag.bag_dag(dag)
    if AIRFLOW_V_3_1_PLUS:
        sync_bag_to_db(bag, BUNDLE, None)
    else:
        bag.sync_to_db(BUNDLE, None)  # type: ignore[attr-defined]  # Airflow 3.0


def test_dag(dag: DAG, **test_kwargs: Any) -> Any:
    """``register_dag(dag)`` then ``dag.test(**test_kwargs)``; returns the finished DagRun."""
    register_dag(dag)
    return dag.test(**test_kwargs)


test_dag.__test__ = False  # type: ignore[attr-defined]  # not a test for pytest to collect
