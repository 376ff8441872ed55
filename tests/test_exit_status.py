"""tests/conftest.py ends the process with pytest's own status: CI must still fail on a failing
test and on an empty run (exit 5), and pass on a passing one."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("body, args, want", [("def test_ok():\n    assert True\n", [], 0),
                                              ("def test_bad():\n    assert 1 == 2\n", [], 1),
                                              ("def test_ok():\n    assert True\n", ["-k", "no_such_test"], 5)])
def test_the_exit_status_is_pytest_s(tmp_path, body, args, want):
    (tmp_path / "test_x.py").write_text(body)
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider",
                        str(tmp_path / "test_x.py"), *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == want, r.stdout + r.stderr
    if want == 1:
        assert "1 failed" in r.stdout  # the summary is flushed before the process exits


def test_the_interpreter_s_finalisation_is_skipped(tmp_path):
    """The hook ran: an atexit handler (where a native teardown would crash) never runs."""
    marker = tmp_path / "finalised"
    (tmp_path / "test_x.py").write_text(f"import atexit\natexit.register(lambda: open({str(marker)!r}, 'w').close())\n"
                                        "def test_ok():\n    assert True\n")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider",
                        str(tmp_path / "test_x.py")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "1 passed" in r.stdout and not marker.exists()
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / "test_x.py")],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and marker.exists()  # without the hook it does: the check can fail
