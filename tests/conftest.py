"""Session-wide test hooks: the run's exit status is pytest's, not the native libraries' teardown.

A fresh-clone CI run (session 16) passed every test, printed pytest's summary, then died with a
segmentation fault while the interpreter finalised (make: "Segmentation fault", exit 2), once
in several runs. Ray (its core worker threads), torch (inductor compile workers, OpenMP pools)
and ONNX Runtime all hold native threads at that point; their order of teardown at interpreter
exit is not ours to fix. So at the end of the session Ray is shut down if a test left it up,
and after every other plugin has unconfigured, the process exits with pytest's own status
(``os._exit``), skipping only the interpreter's finalisation. Exit 5 (no tests ran) and every
failure status are kept.
"""

import os
import sys

import pytest

_STATUS: dict[str, int] = {}


def pytest_sessionfinish(session, exitstatus):
    _STATUS["exit"] = int(exitstatus)
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    if "exit" not in _STATUS:
        return  # no session ran (e.g. --help, --version)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_STATUS["exit"])
