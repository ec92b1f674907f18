"""Serving images out of an lbdask archive through a Dask cluster (paper sections 4.4 and 5).

Each worker holds its serving state (serve.worker.ServingWorker): a dual-format cache, the model and
a decode pipeline. Clients (serve.client) hash an id to its owner worker and call the
owner's RPC handler (serve.handlers) directly, keeping the scheduler off the read path.
"""
