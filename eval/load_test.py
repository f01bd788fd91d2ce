"""Load test of the HTTP service: concurrent clients searching real queries, on loopback only.

Run it with an index (it starts `vnsearch serve` on a free loopback port and stops it after):

    python -m eval.load_test --index var/demo-index --clients 4 --seconds 20

or against a service already running on this machine: `--url http://127.0.0.1:8000`.
Every loop is bounded by a deadline and a request budget, and only loopback addresses are
accepted as targets.
"""

from __future__ import annotations

import argparse
import ipaddress
import itertools
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from eval.search import load_queries
from nlp.errors import InvalidInputError

DEFAULT_QUERIES = Path(__file__).resolve().parent / "queries" / "search-eval.jsonl"
START_TIMEOUT_S = 180.0
MAX_ERROR_EXAMPLES = 5


@dataclass
class LoadReport:
    """What a load test measured; latencies in milliseconds."""

    clients: int
    seconds: float
    requests: int
    errors: int
    throughput: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    error_examples: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        """Return the report as a JSON-ready dict."""
        return asdict(self)


def check_loopback(url: str) -> str:
    """Return `url` without a trailing slash if its host is a loopback address.

    Raises:
        InvalidInputError: The URL points anywhere else; a load test only targets this machine.
    """
    host = urlsplit(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise InvalidInputError(
            f"{url!r} is not a loopback address; load-test only 127.0.0.1, ::1 or localhost"
        )
    return url.rstrip("/")


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Return the nearest-rank percentile of already sorted values (0 for none)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def run_load_test(
    base_url: str,
    queries: Sequence[str],
    clients: int = 4,
    seconds: float = 10.0,
    max_requests: int = 100_000,
    mode: str = "hybrid",
    k: int = 10,
    timeout: float = 30.0,
) -> LoadReport:
    """Send /search requests from `clients` threads until `seconds` pass or the budget is spent.

    Args:
        base_url: The service, on a loopback address.
        queries: Query texts, cycled through (each client starts at a different one).
        clients: Concurrent clients, each with its own connection.
        seconds: How long to send requests.
        max_requests: Upper bound on requests across all clients.
        mode: The search mode to request.
        k: Hits per request.
        timeout: Seconds before one request counts as failed.

    Returns:
        Throughput, latency percentiles and the error count.

    Raises:
        InvalidInputError: A non-loopback URL, no queries, or a bad count.
    """
    import httpx

    base_url = check_loopback(base_url)
    if not queries:
        raise InvalidInputError("no queries to send; give a query file with at least one line")
    if clients < 1 or seconds <= 0 or max_requests < 1:
        raise InvalidInputError("clients, seconds and max_requests must be positive")
    budget = itertools.count()
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    started = deadline = 0.0

    def client(number: int) -> None:
        texts = itertools.islice(itertools.cycle(queries), number, None)
        with httpx.Client(base_url=base_url, timeout=timeout) as session:
            for query in texts:
                if time.monotonic() >= deadline or next(budget) >= max_requests:
                    return
                began = time.perf_counter()
                try:
                    response = session.get("/search", params={"q": query, "mode": mode, "k": k})
                    problem = None if response.status_code == 200 else f"{response.status_code}"
                except httpx.HTTPError as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                elapsed = (time.perf_counter() - began) * 1000
                with lock:
                    latencies.append(elapsed)
                    if problem is not None:
                        errors.append(f"{query!r}: {problem}")

    # One request before the clock starts, so that first-use costs (lazy loads, caches) are
    # not counted as the service's latency.
    with httpx.Client(base_url=base_url, timeout=timeout) as session:
        session.get("/search", params={"q": queries[0], "mode": mode, "k": k})
    started = time.monotonic()
    deadline = started + seconds
    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    ordered = sorted(latencies)
    return LoadReport(
        clients=clients,
        seconds=round(elapsed, 2),
        requests=len(ordered),
        errors=len(errors),
        throughput=round(len(ordered) / elapsed, 2) if elapsed else 0.0,
        p50_ms=round(percentile(ordered, 0.50), 1),
        p90_ms=round(percentile(ordered, 0.90), 1),
        p99_ms=round(percentile(ordered, 0.99), 1),
        max_ms=round(ordered[-1], 1) if ordered else 0.0,
        error_examples=errors[:MAX_ERROR_EXAMPLES],
    )


def free_loopback_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serving(
    index_dir: str | Path, port: int | None = None, topic_model: str | None = None
) -> Iterator[str]:
    """Run `vnsearch serve` on 127.0.0.1 for the duration of the block; yield its URL.

    Raises:
        InvalidInputError: The service did not answer /health within START_TIMEOUT_S.
    """
    import httpx

    port = port or free_loopback_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "api.cli", "serve", "--index", str(index_dir)]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    if topic_model:
        command += ["--topic-model", topic_model]
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=os.environ)
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    output = log.read().decode("utf-8", "replace")[-2000:]
                    raise InvalidInputError(f"the service did not start: {output}")
                try:
                    if httpx.get(url + "/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.25)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: start (or reach) the service, load it, print the report.

    Returns:
        0 when no request failed, 1 otherwise, 2 for a usage error.
    """
    parser = argparse.ArgumentParser(prog="python -m eval.load_test", description=__doc__)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--index", help="Index folder: start `vnsearch serve` on it.")
    target.add_argument("--url", help="A service already running on a loopback address.")
    parser.add_argument("--topic-model", help="Topic model folder for the started service.")
    parser.add_argument("--clients", type=int, default=4, help="Concurrent clients.")
    parser.add_argument("--seconds", type=float, default=10.0, help="How long to send.")
    parser.add_argument("--max-requests", type=int, default=100_000, help="Request budget.")
    parser.add_argument("--queries", default=str(DEFAULT_QUERIES), help="Query set (JSON Lines).")
    parser.add_argument("--mode", default="hybrid", help="hybrid, dense or lexical.")
    parser.add_argument("-k", type=int, default=10, help="Hits per request.")
    parser.add_argument("--json", action="store_true", help="Print the report as JSON.")
    args = parser.parse_args(argv)
    try:
        queries = [q.query for q in load_queries(args.queries)]

        def measure(url: str) -> LoadReport:
            return run_load_test(
                url, queries, args.clients, args.seconds, args.max_requests, args.mode, args.k
            )

        if args.url:
            report = measure(args.url)
        else:
            with serving(args.index, topic_model=args.topic_model) as url:
                report = measure(url)
    except InvalidInputError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    if args.json:
        sys.stdout.write(json.dumps(report.to_json(), ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(
            f"{report.requests} requests from {report.clients} clients in {report.seconds} s: "
            f"{report.throughput} req/s, p50 {report.p50_ms} ms, p90 {report.p90_ms} ms, "
            f"p99 {report.p99_ms} ms, max {report.max_ms} ms, {report.errors} errors\n"
        )
        for example in report.error_examples:
            sys.stdout.write(f"  {example}\n")
    return 1 if report.errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
