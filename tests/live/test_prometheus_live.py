"""A real Prometheus scrapes depwatch (real 3+3 TLS cluster, real OTLP receivers); every
dashboard target and alert expression is sent to its query API."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import pytest
from deploy.dashboard_queries import alert_queries, dashboard_queries, metric_names
from support.depwatch_harness import fast_env, running_depwatch, value
from support.otlp_receivers import Receivers
from support.prometheus import running_prometheus
from support.redis_servers import REDIS_PASSWORD, RedisCluster, TlsMaterial, wait_for_async

pytestmark = pytest.mark.asyncio

#: produced only by other exporters (kube-state-metrics) or by a failing scenario
_NOT_PRODUCED_HERE = {"kube_pod_container_status_restarts_total"}


async def test_dashboard_and_alert_queries_against_real_prometheus(
        redis_cluster_tls: RedisCluster, tls_material: TlsMaterial, tmp_path: Path) -> None:
    receivers = Receivers()
    try:
        grpc_port = (await receivers.grpc()).port
        http_port = (await receivers.http()).port
        env = fast_env(
            REDIS_ADDRESS=redis_cluster_tls.addresses[0], REDIS_CLUSTER_MODE="true",
            REDIS_TLS_ENABLED="true", REDIS_TLS_CA_FILE=str(tls_material.ca_file),
            REDIS_PASSWORD=REDIS_PASSWORD, REDIS_POOL_SIZE="100", REDIS_READ_ONLY="true",
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{grpc_port}",
            OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
            DEPWATCH_OTLP_GRPC_PORT=str(grpc_port), DEPWATCH_OTLP_HTTP_PORT=str(http_port),
            DEPWATCH_PROBE_INTERVAL="500ms",
        )  # fmt: skip
        async with running_depwatch(env) as dw:
            await dw.wait_metrics(
                lambda m: value(m, "otlp_export_probe_up", endpoint=f"127.0.0.1:{grpc_port}",
                                protocol="grpc") == 1, within=15)  # fmt: skip
            body = await dw.metrics_text()
            promtool = await asyncio.to_thread(
                subprocess.run, [shutil.which("promtool") or "promtool", "check", "metrics"],
                input=body, capture_output=True, text=True, timeout=30, check=False)
            assert promtool.returncode == 0, promtool.stdout + promtool.stderr
            assert promtool.stdout.strip() == "" and promtool.stderr.strip() == ""
            produced = {line.split("{")[0].split(" ")[0] for line in body.splitlines()
                        if line and not line.startswith("#")} | {"up"}  # fmt: skip
            target = f"127.0.0.1:{dw.client.server.port}"
            with running_prometheus(tmp_path / "prom", [target], job="depwatch") as prom:
                async def scraped_enough() -> bool:
                    result = prom.query(
                        "count_over_time(redis_health_checks_total[1m])")["data"]["result"]
                    return bool(result) and min(float(r["value"][1]) for r in result) >= 6

                await wait_for_async(scraped_enough, timeout=60, interval=0.5)
                problems: list[str] = []
                checked_for_data = 0
                for query in dashboard_queries() + alert_queries():
                    answer = prom.query(query.expr)
                    if answer["status"] != "success":
                        problems.append(f"{query.source}: does not parse: {answer.get('error')}")
                        continue
                    names = metric_names(query.expr)
                    needs_data = query in dashboard_queries() and names <= produced \
                        and not names & _NOT_PRODUCED_HERE
                    checked_for_data += needs_data
                    if needs_data and not answer["data"]["result"]:
                        problems.append(f"{query.source}: no series: {query.expr}")
                assert not problems, "\n".join(problems)
                assert checked_for_data >= 20, checked_for_data
    finally:
        await receivers.stop()
