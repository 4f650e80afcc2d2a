"""Writing a file atomically, even under Ctrl-C: the target is always the old or
the new complete file, and nothing is left behind, however often SIGINT arrives."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import tempfile


def write_atomic(path: str, blob: bytes) -> None:
    """Temporary file in the target's folder (removed on error), fsync, ``os.replace``; SIGINT
    held back throughout, then re-raised for the previous handler (main thread only)."""
    folder = os.path.dirname(os.path.abspath(path))
    try:  # keep the permissions of the file being replaced, else the umask's
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        umask = os.umask(0o022)
        os.umask(umask)
        mode = 0o666 & ~umask
    held: list[int] = []
    previous = signal.getsignal(signal.SIGINT)
    installed = False
    if previous is not None:  # None: a handler not set from Python, not restorable
        with contextlib.suppress(ValueError):  # raised outside the main thread
            signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
            installed = True
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
        try:
            try:
                view = memoryview(blob)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        with contextlib.suppress(OSError, AttributeError):  # make the rename durable (POSIX)
            dir_fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    finally:
        if installed:
            signal.signal(signal.SIGINT, previous)
            for signum in held:
                signal.raise_signal(signum)
