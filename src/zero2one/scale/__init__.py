"""Scale out with Dask: clusters, data larger than memory and partitioned scoring.

The embedded default needs no cluster: a command that needs one starts a ``LocalCluster`` sized
to this machine and stops it when it ends. ``--scheduler tcp://HOST:PORT`` (or the
``DASK_SCHEDULER_ADDRESS`` environment variable) uses a running cluster instead.
"""

from zero2one.scale.cluster import ENV_ADDRESS, client, configured_address, using
from zero2one.scale.frames import expand, is_glob, read_frames, source_bytes

__all__ = ["ENV_ADDRESS", "client", "configured_address", "expand", "is_glob", "read_frames",
           "source_bytes", "using"]
