"""Data parallelism on JAX: all of tinynet's ``jax.sharding`` and ``jax.distributed``."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "batch"


def initialize(
    coordinator: str,
    num_processes: int,
    process_id: int,
    *,
    bind_address: str | None = None,
    timeout: int = 300,
) -> None:
    """``jax.distributed.initialize`` (CPU collectives: gloo unless chosen before);
    process 0 binds to ``bind_address``, by default the coordinator's address."""
    if jax.distributed.is_initialized():
        raise RuntimeError(
            "tinynet.parallel.initialize was already called in this process "
            "(jax.distributed is initialized); call it once, at program start"
        )
    if jax.config.jax_cpu_collectives_implementation is None:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(
            coordinator_address=coordinator,
            num_processes=num_processes,
            process_id=process_id,
            cluster_detection_method="deactivate",
            initialization_timeout=timeout,
            coordinator_bind_address=bind_address or coordinator,
        )
    except RuntimeError as err:
        if "before" in str(err).lower():
            raise RuntimeError(
                "tinynet.parallel.initialize must run before JAX does anything in this "
                "process: call it first, before building a model or any array on the "
                f"JAX backend ({err})"
            ) from None
        raise
    # the JAX backend makes new arrays on a device of THIS process
    # (jax.devices()[0] belongs to process 0)
    import backends

    backend = backends.load("jax")
    local = jax.local_devices()[0]
    backend.device = local
    if jax.process_count() > 1:
        backend.description = (
            f"{local.platform.upper()} ({jax.local_device_count()} local / "
            f"{jax.device_count()} global device(s), process {jax.process_index()} "
            f"of {jax.process_count()})"
        )


def is_initialized() -> bool:
    return jax.distributed.is_initialized()


def shutdown() -> None:
    """``jax.distributed.shutdown`` if it was initialized (tests, clean exit)."""
    if jax.distributed.is_initialized():
        jax.distributed.shutdown()


def info() -> dict[str, Any]:
    """Device and process counts as JAX sees them."""
    return {
        "platform": jax.devices()[0].platform,
        "global_devices": jax.device_count(),
        "local_devices": jax.local_device_count(),
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
    }


class JaxDataParallel:
    """A 1-D mesh over ``jax.devices()[:n]`` (global devices, all processes)."""

    def __init__(self, n: int):
        devices = jax.devices()[:n]
        self.n = n
        self.device_ids = tuple(d.id for d in devices)
        self.mesh = Mesh(np.array(devices), (AXIS,))
        self.replicated = NamedSharding(self.mesh, PartitionSpec())
        self.split = NamedSharding(self.mesh, PartitionSpec(AXIS))
        self.multi_process = jax.process_count() > 1

    def put_data(self, a: Any) -> Any:
        """``a`` (a whole data set) replicated on every device of the mesh; others unchanged."""
        if not isinstance(a, jax.Array) or getattr(a, "sharding", None) == self.replicated:
            return a
        if not self.multi_process:
            return jax.device_put(a, self.replicated)
        # every process holds the same full value and fills its own devices
        host = np.asarray(_local_value(a))
        return jax.make_array_from_callback(host.shape, self.replicated, lambda index: host[index])

    def replicate(self, tree: Any) -> Any:
        """Every array of ``tree`` replicated on all devices of the mesh."""
        return jax.tree_util.tree_map(self.put_data, tree)

    def shard_batch(self, a: Any) -> Any:
        """Split ``a``'s rows over the mesh (inside ``jit``); a ragged batch stays replicated."""
        spec = self.split if a.shape[0] % self.n == 0 else self.replicated
        return jax.lax.with_sharding_constraint(a, spec)

    def gather(self, tree: Any, device: Any) -> Any:
        """Arrays of ``tree`` as single-device arrays on ``device`` (of this process)."""
        return jax.tree_util.tree_map(
            lambda a: jax.device_put(_local_value(a), device) if isinstance(a, jax.Array) else a,
            tree,
        )

    def describe(self) -> str:
        platform = self.mesh.devices.flat[0].platform
        procs = f" over {jax.process_count()} processes" if self.multi_process else ""
        return f"{self.n} {platform.upper()} device(s){procs}, mesh axis {AXIS!r}"


def _local_value(a: Any) -> Any:
    """A single-device array (or host copy) holding the full value of ``a``."""
    if len(a.sharding.device_set) == 1:
        return a
    if a.is_fully_replicated:
        return a.addressable_data(0)
    if a.is_fully_addressable:
        return np.asarray(a)
    from jax.experimental import multihost_utils

    return multihost_utils.process_allgather(a, tiled=True)


def batch_split_in_hlo(fn: Any, *args: Any) -> dict[str, Any]:
    """The all-reduce count of the compiled ``jit(fn)(*args)``, and its text (tests)."""
    text = jax.jit(fn).lower(*args).compile().as_text()
    return {"all_reduce": text.count("all-reduce("), "hlo": text}
