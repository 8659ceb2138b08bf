"""Process entry point: SIGTERM handled before the heavy imports.

As PID 1 in a container the kernel drops SIGTERM when no handler is installed, so
a pod being deleted during start-up would wait out its whole grace period. The
handler goes in first; importing aiohttp, redis and grpc takes a few hundred ms.
"""

from __future__ import annotations

import signal
import sys
from typing import NoReturn

__all__ = ["exit_on_sigterm", "main"]


def exit_on_sigterm(_signum: int, _frame: object) -> NoReturn:
    """Until the event loop installs its own handler: exit 0 at once."""
    raise SystemExit(0)


def main() -> int:
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    from exporter.cli import main as cli_main

    return cli_main(sys.argv[1:])
