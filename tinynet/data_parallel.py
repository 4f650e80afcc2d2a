"""``fit(..., devices=N)``'s helper: validation, placement and the batch split on
a JAX device mesh (:mod:`tinynet.parallel` is the user-facing side)."""

from __future__ import annotations

from typing import Any

from . import arguments, backends


def _impl():
    """``backends._jax_parallel`` (imports jax), or a clear error without jax."""
    try:
        from .backends import _jax_parallel
    except ImportError:
        raise backends.missing_package("jax", "jax") from None
    return _jax_parallel


class DataParallel:
    """Data parallelism over ``devices`` devices of ``backend`` (``where``: the caller,
    in errors); equal for the same devices; with one device every method is the identity."""

    def __init__(self, backend: backends.Backend, devices: int, where: str = "fit"):
        self.devices = arguments.count("", "devices", devices)
        where = f"{where}(devices={self.devices})" if where == "fit" else where
        self.backend = backend
        try:
            self._impl: Any = backend.device_mesh(self.devices)  # None for one device
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None
        ids = self._impl.device_ids if self._impl is not None else ()
        self._key = (backend.name, self.devices, ids)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DataParallel) and self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __repr__(self) -> str:
        if self._impl is None:
            return f"DataParallel({self.backend.name}, 1 device)"
        return f"DataParallel({self._impl.describe()})"

    def check_batch_size(self, batch_size: int, n: int) -> None:
        """``ValueError`` unless every full batch splits evenly over the devices
        (a ragged last batch that does not is computed replicated: same numbers)."""
        d = self.devices
        if d == 1 or batch_size % d == 0:
            return
        lower = (batch_size // d) * d
        options = " or ".join(str(b) for b in (lower, lower + d) if b > 0)
        raise ValueError(
            f"fit(devices={d}): batch_size={batch_size} is not divisible by the {d} devices "
            f"(each device computes batch_size / devices rows of every batch); choose a "
            f"multiple of {d}, e.g. batch_size={options} (n={n} samples)"
        )

    def put_data(self, a: Any) -> Any:
        """A whole data set (x or y), replicated on every device of the mesh."""
        return a if self._impl is None else self._impl.put_data(a)

    def replicate(self, tree: Any) -> Any:
        """The arrays of ``tree`` (parameters, data, keys) replicated on every device."""
        return tree if self._impl is None else self._impl.replicate(tree)

    def shard_batch(self, a: Any) -> Any:
        """Inside the jitted step: split a batch's rows over the devices."""
        return a if self._impl is None else self._impl.shard_batch(a)

    def gather(self, tree: Any) -> Any:
        """Arrays of ``tree`` back on the backend's device of this process."""
        return tree if self._impl is None else self._impl.gather(tree, self.backend.device)
