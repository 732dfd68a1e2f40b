"""Which Dask cluster a command uses, connected (or started) on first use and closed at its end.

The CLI says where the scheduler is (:func:`using`); library code that needs a cluster asks for
a client (:func:`client`), so a command that never needs one never starts one::

    with scale.using("tcp://10.0.0.5:8786"):   # --scheduler; None: DASK_SCHEDULER_ADDRESS,
        dask = scale.client(reporter)          #   else a LocalCluster for this machine
        dask.submit(...)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zero2one.errors import UserError, require
from zero2one.logs import quieted
from zero2one.machine import usable_cores

if TYPE_CHECKING:
    from distributed import Client

    from zero2one.progress import Reporter

log = logging.getLogger(__name__)

ENV_ADDRESS = "DASK_SCHEDULER_ADDRESS"
CONNECT_TIMEOUT_S = 5
SCHEMES = ("tcp://", "tls://", "inproc://", "ws://", "wss://", "ucx://")


@dataclass(frozen=True)
class Settings:
    address: str | None = None  # a running scheduler; None: the environment, else local
    workers: int | None = None  # LocalCluster size; None: one per core
    memory_limit: str | None = None  # per LocalCluster worker ("2GiB"); None: Dask's "auto"


class _Scope:
    """One command's cluster: nothing until the first :func:`client` call, closed at the end."""

    def __init__(self, settings: Settings, say: Callable[[str], None] | None) -> None:
        self.settings, self.say = settings, say
        self.client: Client | None = None
        self.cluster: Any = None

    def get(self, reporter: Reporter | None) -> Client:
        if self.client is not None:
            return self.client
        require("distributed", "scale")
        import distributed  # noqa: F401 - it sets its loggers' levels when first imported

        if not log.isEnabledFor(logging.DEBUG):  # the scheduler's and nannies' INFO lines
            logging.getLogger("distributed").setLevel(logging.WARNING)
        address = _address(self.settings)
        if address is not None:
            self.client = connect(address)
            where = f"Dask scheduler {address}"
        else:
            self.cluster = local_cluster(self.settings.workers, self.settings.memory_limit)
            self.client = _client(self.cluster)
            where = (f"local Dask cluster: {len(self.cluster.workers)} workers, "
                     f"{_memory(self.cluster)} each")
        message = f"[dask] {where}; dashboard {self.client.dashboard_link}"
        if reporter is not None:
            reporter.info(message)
        elif self.say is not None:
            self.say(message)
        else:
            log.info(message)
        return self.client

    def close(self) -> None:
        # while a cluster shuts down, its connections close under the client, the scheduler
        # and the nannies, and distributed logs each as an ERROR with a CommClosedError
        # traceback — after a successful run. The work is done: only a failure to close counts.
        debug = log.isEnabledFor(logging.DEBUG)
        try:
            with quieted(*(() if debug else ("distributed",)), level=logging.CRITICAL):
                if self.client is not None:
                    self.client.close()
                if self.cluster is not None:
                    self.cluster.close()
        finally:
            self.client = self.cluster = None


_scope: ContextVar[_Scope | None] = ContextVar("zero2one_dask_scope", default=None)


@contextmanager
def using(address: str | None = None, *, workers: int | None = None,
          memory_limit: str | None = None,
          say: Callable[[str], None] | None = None) -> Iterator[None]:
    """Within the block, :func:`client` connects to ``address`` (else DASK_SCHEDULER_ADDRESS,
    else a new LocalCluster of ``workers`` processes with ``memory_limit`` each); whatever was
    started is stopped when the block ends; ``say`` hears which cluster and its dashboard.
    Nothing is started here. A block inside another with no settings of its own uses the outer
    one's cluster."""
    if address is not None:
        check_address(address)
    settings = Settings(address, workers, memory_limit)
    if _scope.get() is not None and settings == Settings():
        yield
        return
    scope = _Scope(settings, say)
    token = _scope.set(scope)
    try:
        yield
    finally:
        _scope.reset(token)
        scope.close()


def configured_address() -> str | None:
    """The running scheduler the user named (``--scheduler`` or the environment), if any."""
    scope = _scope.get()
    return _address(scope.settings if scope is not None else Settings())


def _address(settings: Settings) -> str | None:
    return settings.address or os.environ.get(ENV_ADDRESS) or None


def check_address(address: str) -> None:
    if not address.startswith(SCHEMES):
        raise UserError(f"--scheduler {address!r}: give the scheduler's address as "
                        "tcp://HOST:PORT (what `dask scheduler` prints)")


def client(reporter: Reporter | None = None) -> Client:
    """The block's Dask client (see :func:`using`), connected or started on the first call;
    the dashboard's address is said through ``reporter``."""
    scope = _scope.get()
    if scope is None:
        raise RuntimeError("zero2one.scale.client() needs an enclosing zero2one.scale.using()")
    return scope.get(reporter)


def connect(address: str) -> Client:
    """A client of a running scheduler; an unreachable one is a UserError within seconds."""
    check_address(address)
    from distributed import Client

    try:
        return Client(address, timeout=f"{CONNECT_TIMEOUT_S}s")
    except (OSError, TimeoutError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot reach the Dask scheduler at {address} within "
                        f"{CONNECT_TIMEOUT_S} s ({reason}); start one with `dask scheduler` "
                        f"and `dask worker {address}`, or leave out --scheduler and "
                        f"{ENV_ADDRESS} to use a local cluster") from None


def local_cluster(workers: int | None = None, memory_limit: str | None = None) -> Any:
    """A LocalCluster of single-threaded worker processes (one per core by default) whose
    memory limits add up to what this machine has; the dashboard listens on 127.0.0.1."""
    from distributed import LocalCluster

    return LocalCluster(n_workers=workers or usable_cores(), threads_per_worker=1, processes=True,
                        memory_limit=memory_limit or "auto", dashboard_address="127.0.0.1:0",
                        host="127.0.0.1", silence_logs=logging.ERROR)


def _client(cluster: Any) -> Client:
    from distributed import Client

    return Client(cluster)


def _memory(cluster: Any) -> str:
    from dask.utils import format_bytes

    limits = [w.memory_manager.memory_limit for w in cluster.workers.values()
              if getattr(w, "memory_manager", None) is not None]
    if not limits:  # nanny-managed workers report their limit through the scheduler
        limits = [ws.memory_limit for ws in cluster.scheduler.workers.values()]
    return format_bytes(min(limits)) if limits and all(limits) else "no memory limit"
