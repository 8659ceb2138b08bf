"""A real Prometheus (Debian's package) on 127.0.0.1, scraping given targets."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from support.redis_servers import free_port, wait_for


def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if path is None:
        raise RuntimeError("prometheus not found: apt-get install prometheus (.ci/setup does)")
    return path


class Prometheus:
    def __init__(self, port: int) -> None:
        self.port = port

    def query(self, expr: str) -> dict[str, Any]:
        """The API's JSON answer (status success/error) for an instant query."""
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode(
            {"query": expr})
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:  # 400/422 carry the parse error as JSON
            return json.loads(exc.read())

    def targets_up(self) -> bool:
        result = self.query("up")
        data = result.get("data", {}).get("result", [])
        return bool(data) and all(r["value"][1] == "1" for r in data)


@contextmanager
def running_prometheus(workdir: Path, targets: Sequence[str], *, job: str = "depwatch",
                       interval: str = "1s") -> Iterator[Prometheus]:
    """Prometheus scraping ``targets`` (host:port) every ``interval``; stopped on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    config.write_text(
        "global:\n"
        f"  scrape_interval: {interval}\n"
        f"  evaluation_interval: {interval}\n"
        "scrape_configs:\n"
        f"  - job_name: {job}\n"
        f"    static_configs:\n      - targets: {json.dumps(list(targets))}\n"
    )
    port = free_port()
    log = (workdir / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [prometheus_binary(), f"--config.file={config}",
         f"--storage.tsdb.path={workdir / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    prom = Prometheus(port)
    try:
        wait_for(lambda: prom.query("vector(1)")["status"] == "success", timeout=30,
                 description="prometheus answering")  # fmt: skip
        yield prom
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
        time.sleep(0)
