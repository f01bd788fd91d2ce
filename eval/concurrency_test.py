"""Searching while the index is rebuilt: clients keep searching a served index during re-indexes.

It builds a small index from real documents in a temporary folder, serves it with
`vnsearch serve` on a free loopback port, and runs `vnsearch index --prune` on the same folder
several times, adding and removing a real document in turn. Meanwhile `--clients` threads send
real queries. No request may fail, and after each re-index the service must serve the new
generation (it checks at most once a second) and find, or no longer find, that document:

    python -m eval.concurrency_test --rounds 4 --clients 4
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

from eval.crash_test import index_command
from eval.load_test import DEFAULT_QUERIES, percentile, serving
from eval.search import load_queries
from nlp.errors import InvalidInputError

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = REPO.parent / "shared" / "corpus"
BASE_DOCUMENTS = ("reports/hai-duong-2022-h1-bao-cao-xay-dung-dang.txt",)
TOGGLED = "party/01b33bf53f319a03.md"
TOGGLED_QUERY = "bài phát biểu tổng kết công tác Đảng tại sinh hoạt chi bộ trường mầm non"
PICKUP_TIMEOUT_S = 15.0
RUN_TIMEOUT_S = 600.0
MAX_ERROR_EXAMPLES = 5


@dataclass
class Round:
    """One re-index while clients searched."""

    number: int
    action: str
    index_seconds: float
    generation: int
    pickup_seconds: float | None
    document_found: bool | None


@dataclass
class ConcurrencyReport:
    """What the clients saw across all rounds; latencies in milliseconds."""

    clients: int
    seconds: float
    requests: int
    errors: int
    requests_while_writing: int
    errors_while_writing: int
    p50_ms: float
    p99_ms: float
    p99_while_writing_ms: float
    rounds: list[Round] = field(default_factory=list)
    error_examples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No failed request, and every round was picked up with the expected documents."""
        return not self.errors and all(
            r.pickup_seconds is not None and r.document_found for r in self.rounds
        )

    def to_json(self) -> dict:
        """Return the report as a JSON-ready dict."""
        return {**asdict(self), "ok": self.ok}


class Clients:
    """Threads sending /search requests until stopped, noting whether a writer was running."""

    def __init__(self, url: str, queries: Sequence[str], clients: int) -> None:
        """Prepare `clients` threads against `url`."""
        self.url = url
        self.queries = list(queries)
        self.writing = threading.Event()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.samples: list[tuple[float, bool, bool]] = []  # (ms, failed, while writing)
        self.error_examples: list[str] = []
        self.threads = [
            threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(clients)
        ]

    def _run(self, number: int) -> None:
        import httpx

        texts = itertools.islice(itertools.cycle(self.queries), number, None)
        with httpx.Client(base_url=self.url, timeout=30) as session:
            for query in texts:
                if self.stop.is_set():
                    return
                writing = self.writing.is_set()
                began = time.perf_counter()
                try:
                    response = session.get("/search", params={"q": query, "k": 10})
                    problem = None if response.status_code == 200 else str(response.status_code)
                    if problem is None and "hits" not in response.json():
                        problem = "no hits field"
                except (httpx.HTTPError, ValueError) as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                elapsed = (time.perf_counter() - began) * 1000
                with self.lock:
                    self.samples.append((elapsed, problem is not None, writing))
                    if problem and len(self.error_examples) < MAX_ERROR_EXAMPLES:
                        self.error_examples.append(f"{query!r}: {problem}")

    def __enter__(self) -> Clients:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)


def run_index(command: Sequence[str]) -> float:
    """Run one `vnsearch index`; return its seconds.

    Raises:
        InvalidInputError: It failed.
    """
    began = time.monotonic()
    process = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env=os.environ
    )
    if process.returncode != 0:
        raise InvalidInputError(f"vnsearch index failed: {process.stderr[-2000:]}")
    return time.monotonic() - began


def wait_for_generation(url: str, generation: int) -> float | None:
    """Return the seconds until the service reports `generation`, or None on time-out."""
    import httpx

    began = time.monotonic()
    while time.monotonic() - began < PICKUP_TIMEOUT_S:
        if httpx.get(url + "/health", timeout=10).json()["generation"] >= generation:
            return time.monotonic() - began
        time.sleep(0.05)
    return None


def finds_toggled(url: str) -> bool:
    """Whether the toggled document is among the hits of its own title."""
    import httpx

    body = httpx.get(url + "/search", params={"q": TOGGLED_QUERY, "k": 10}, timeout=30).json()
    return any(hit["doc"].endswith(Path(TOGGLED).name) for hit in body["hits"])


def run_concurrency_test(
    work: Path,
    rounds: int = 4,
    clients: int = 4,
    corpus: Path = DEFAULT_CORPUS,
    topic_model: str | None = None,
    queries_path: Path = DEFAULT_QUERIES,
    log: TextIO | None = None,
) -> ConcurrencyReport:
    """Serve an index built in `work` and re-index it `rounds` times under `clients` searchers.

    Raises:
        InvalidInputError: The index could not be built or served, or a re-index failed.
    """
    from index.store import read_manifest

    began = time.monotonic()
    docs, root = work / "docs", work / "index"
    docs.mkdir(parents=True)
    for name in BASE_DOCUMENTS:
        shutil.copy(corpus / name, docs / Path(name).name)
    run_index(index_command(docs, root, topic_model))
    queries = [q.query for q in load_queries(queries_path)]
    done: list[Round] = []
    with serving(root, topic_model=topic_model) as url, Clients(url, queries, clients) as crowd:
        time.sleep(1.0)  # some requests before the first writer starts
        for number in range(1, rounds + 1):
            adding = number % 2 == 1
            toggled = docs / Path(TOGGLED).name
            if adding:
                shutil.copy(corpus / TOGGLED, toggled)
            else:
                toggled.unlink()
            crowd.writing.set()
            try:
                seconds = run_index(index_command(docs, root, topic_model))
            finally:
                crowd.writing.clear()
            generation = read_manifest(root).generation
            pickup = wait_for_generation(url, generation)
            found = finds_toggled(url) if pickup is not None else None
            result = Round(
                number,
                "add" if adding else "remove",
                round(seconds, 2),
                generation,
                None if pickup is None else round(pickup, 2),
                None if found is None else found == adding,
            )
            done.append(result)
            if log is not None:
                log.write(f"round {number}: {asdict(result)}\n")
                log.flush()
        time.sleep(1.0)
    samples = crowd.samples
    overall = sorted(ms for ms, _, _ in samples)
    writing = sorted(ms for ms, _, during in samples if during)
    return ConcurrencyReport(
        clients=clients,
        seconds=round(time.monotonic() - began, 1),
        requests=len(samples),
        errors=sum(failed for _, failed, _ in samples),
        requests_while_writing=len(writing),
        errors_while_writing=sum(failed for _, failed, during in samples if during),
        p50_ms=round(percentile(overall, 0.5), 1),
        p99_ms=round(percentile(overall, 0.99), 1),
        p99_while_writing_ms=round(percentile(writing, 0.99), 1),
        rounds=done,
        error_examples=crowd.error_examples,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: run the rounds and print the figures.

    Returns:
        0 when no request failed and every round was picked up, 1 otherwise, 2 for a usage error.
    """
    parser = argparse.ArgumentParser(prog="python -m eval.concurrency_test", description=__doc__)
    parser.add_argument("--rounds", type=int, default=4, help="Re-indexes (add, remove, ...).")
    parser.add_argument("--clients", type=int, default=4, help="Concurrent searching clients.")
    parser.add_argument("--corpus", default=str(DEFAULT_CORPUS), help="The shared corpus.")
    parser.add_argument("--topic-model", help="Topic model folder (default: the shipped one).")
    parser.add_argument("--queries", default=str(DEFAULT_QUERIES), help="Query set (JSON Lines).")
    parser.add_argument("--json", action="store_true", help="Print the report as JSON.")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.clients < 1:
        sys.stderr.write("error: --rounds and --clients must be at least 1\n")
        return 2
    work = Path(tempfile.mkdtemp(prefix="vnsearch-concurrency-"))
    try:
        report = run_concurrency_test(
            work,
            args.rounds,
            args.clients,
            Path(args.corpus),
            args.topic_model,
            Path(args.queries),
            log=None if args.json else sys.stdout,
        )
    except (InvalidInputError, OSError, subprocess.TimeoutExpired) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        sys.stdout.write(json.dumps(report.to_json(), ensure_ascii=False) + "\n")
    else:
        pickups = [r.pickup_seconds for r in report.rounds]
        sys.stdout.write(
            f"{report.requests} searches from {report.clients} clients in {report.seconds} s "
            f"({report.requests_while_writing} while a re-index ran): {report.errors} errors "
            f"({report.errors_while_writing} while writing); p50 {report.p50_ms} ms, "
            f"p99 {report.p99_ms} ms (while writing {report.p99_while_writing_ms} ms); "
            f"{len(report.rounds)} re-indexes, new generation served after {pickups} s\n"
        )
        for example in report.error_examples:
            sys.stdout.write(f"  {example}\n")
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
