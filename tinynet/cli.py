"""The ``tinynet`` entry point: the one place that turns errors into one line and
an exit status (the parser is in :mod:`.options`, the commands in :mod:`.commands`)."""

from __future__ import annotations

import argparse
import os
import signal
import sys

from . import commands
from .backends import BackendUnavailableError
from .checkpoint import CheckpointError
from .options import CLIError, build_parser

__all__ = ["build_parser", "main"]
_LIBRARY_ERRORS = (CheckpointError, BackendUnavailableError)  # user errors too


def main(argv: list[str] | None = None) -> int:
    try:
        status = _main(argv)
        sys.stdout.flush()  # a closed pipe shows here, not in the exit's flush
        return status
    except BrokenPipeError:
        # The reader (e.g. `head`) has stopped reading: stop quietly, as Unix
        # tools do.  Point stdout/stderr at devnull so the interpreter's final
        # flush cannot raise again, and exit as if killed by SIGPIPE.
        devnull = os.open(os.devnull, os.O_WRONLY)
        for stream in (sys.stdout, sys.stderr):
            try:
                os.dup2(devnull, stream.fileno())
            except (OSError, ValueError):  # replaced streams (tests) have no fd
                pass
        return 128 + signal.SIGPIPE


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # everything after "bench" goes to bench/train_step.py
        args = argparse.Namespace(command="bench", args=argv[1:])
    else:
        args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return getattr(commands, args.command.replace("-", "_"))(args)
    except BrokenPipeError:
        raise
    except (CLIError, ValueError, TypeError, OSError, ImportError, *_LIBRARY_ERRORS) as err:
        if os.environ.get("TINYNET_DEBUG"):
            raise
        print(f"tinynet {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a burst of Ctrl-C: no traceback
        print(f"tinynet {args.command}: interrupted", file=sys.stderr)
        return 130


def _one_line(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror and err.filename is not None:
        return f"{err.filename}: {err.strerror}"  # not "[Errno 2] ..."
    return " ".join(str(err).split())


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
