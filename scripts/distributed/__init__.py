"""``make e2e-distributed``: the stack (:mod:`.stack`), its fault scenarios (:mod:`.scenarios`)
and the DAGs they run (``dags/``). The driver is ``scripts/e2e_distributed.py``."""
