"""The Ray Tune backend end to end: local cluster, dashboard HTTP API, trial actors."""

import json
import os
import urllib.request
from pathlib import Path

import pytest

from search.run import main

ray = pytest.importorskip("ray")


def test_unreachable_or_malformed_address_is_a_clear_error():
    from search.backends.ray import init_ray

    with pytest.raises(ValueError, match="cannot reach a Ray cluster at '127.0.0.1:1'"):
        init_ray("127.0.0.1:1")
    with pytest.raises(ValueError, match="expected HOST:PORT"):
        init_ray("my-cluster")
    assert main(["--latency-ms", "5", "--backend", "ray", "--address", "127.0.0.1:1", "--out", "/nonexistent"]) == 2


@pytest.fixture(scope="module")
def cluster():
    from search.backends.ray import init_ray

    ctx = init_ray(None, num_cpus=2)
    yield ctx
    ray.shutdown()


def _get(url: str) -> dict:
    req = urllib.request.Request(url)
    token = Path(os.path.expanduser("~/.ray/auth_token"))
    if token.is_file():
        req.add_header("Authorization", f"Bearer {token.read_text().strip()}")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read().decode())


@pytest.mark.slow
def test_ray_backend_runs_trials_as_named_actors_visible_in_the_dashboard(cluster, env):
    base, out = env
    rc = main(base + ["--epochs", "1", "--latency-ms", "1000", "--trials", "4", "--backend", "ray",
                      "--concurrency", "2"])
    assert rc == 0
    run = (out / "latest").resolve()
    res = json.loads((run / "result.json").read_text())
    assert res["n_trials"] == 4 and res["winner"]["latency"]["median_ms"] <= 1000
    assert (run / "model.pt").is_file() and (run / "ray_study.txt").is_file()
    url = "http://" + cluster.dashboard_url
    actors = _get(url + "/api/v0/actors?limit=1000")["data"]["result"]["result"]
    names = [a.get("class_name") for a in actors]
    assert names.count("ArchTrial") >= 4, names
    jobs = _get(url + "/api/v0/jobs")["data"]["result"]["result"]
    assert any(j.get("job_id") == ray.get_runtime_context().get_job_id() for j in jobs), jobs
