"""Crash test of the indexer: SIGKILL `vnsearch index` at random moments while it updates an index.

Each trial restores a base index (the sample report and one party document), starts
`python -m api.cli index` on an updated folder (the report with one paragraph edited, the party
document removed with --prune, three others added) and kills it with SIGKILL after a random
delay. After the kill the index must load, search and equal either the old or the new state
(documents, passage ids, counts and the results of fixed queries), and re-running the update
must complete it. The writers run a copy of the code taken at the start, so that commits made
meanwhile in a shared checkout cannot change what is compared. Run it from the repository root:

    python -m eval.crash_test --trials 20

Kill moments are drawn at random, stratified: half over the whole run from its start (model
loading included), a quarter over the writing part from the first write, and a quarter between
the publish step and the end, so that kills land mid-write and right after publishing often
enough to matter.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from index.indexer import index_paths
from index.search import Searcher
from index.store import generation_dir, read_manifest, writer_lock
from nlp.errors import InvalidInputError, VnsearchError

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = REPO.parent / "shared" / "corpus"
REPORT = "reports/hai-duong-2022-h1-bao-cao-xay-dung-dang.txt"
REMOVED = "party/01692bb313971813.md"
ADDED = ("party/01b33bf53f319a03.md", "party/6b25f327a76fa42d.md", "party/4757b5a9030d86a6.md")
EDIT = ("thi hành kỷ luật 151 đảng viên", "thi hành kỷ luật 152 đảng viên")
QUERIES = (
    ("kỷ luật đảng viên", "hybrid"),
    ("ky luat dang vien", "lexical"),
    ("sinh hoạt chi bộ", "hybrid"),
    ("công tác tổ chức cơ sở đảng", "dense"),
)
SOURCE_PACKAGES = ("nlp", "models", "index", "api")
ANCHORS = ("start", "first write", "publish")
PHASES = ("before any write", "mid-write", "after publish", "finished before the kill")
RUN_TIMEOUT_S = 600.0
SCORE_TOLERANCE = 1e-4


@dataclass
class Timeline:
    """When, in seconds after the start, an uninterrupted update reached each step."""

    first_write: float
    published: float
    finished: float


@dataclass
class Kill:
    """When to kill: `delay` seconds after the writer reached `anchor`."""

    anchor: str  # one of ANCHORS
    delay: float


@dataclass
class Trial:
    """One kill and what was found after it."""

    number: int
    kill: Kill
    killed_at: float  # seconds after the start (or when the writer ended by itself)
    phase: str
    state: str
    rerun_ok: bool
    leftover_processes: int
    problem: str | None = None


@dataclass
class CrashReport:
    """All trials of a crash test."""

    trials: list[Trial] = field(default_factory=list)
    timeline: Timeline | None = None
    seconds: float = 0.0

    def to_json(self) -> dict:
        """Return the report as a JSON-ready dict (with per-phase counts and failures)."""
        return {
            "trials": len(self.trials),
            "phases": dict(Counter(t.phase for t in self.trials)),
            "states": dict(Counter(t.state for t in self.trials)),
            "failures": sum(t.problem is not None for t in self.trials),
            "leftover_processes": sum(t.leftover_processes for t in self.trials),
            "timeline": asdict(self.timeline) if self.timeline else None,
            "seconds": round(self.seconds, 1),
            "details": [asdict(t) for t in self.trials],
        }


def source_digest(root: Path) -> str:
    """Return a digest of the vnsearch packages (code and shipped model files) under `root`."""
    digest = hashlib.sha256()
    for package in SOURCE_PACKAGES:
        for path in sorted((root / package).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def snapshot_code(work: Path) -> Path:
    """Copy the vnsearch packages into `work/code`, where every `vnsearch index` runs.

    States are compared across many processes over minutes; in a shared checkout someone may
    commit meanwhile, so the writers run one fixed copy of the code this process imported.

    Raises:
        InvalidInputError: The code changed while it was being copied.
    """
    before = source_digest(REPO)
    code = work / "code"
    for package in SOURCE_PACKAGES:
        shutil.copytree(
            REPO / package, code / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    if source_digest(code) != before:
        raise InvalidInputError("the code changed while it was being copied; run again")
    return code


def index_state(root: Path, embedder: Any) -> dict:
    """Return what a user sees of the index: counts, documents, passage ids and fixed results.

    Raises:
        VnsearchError: The index does not load.
    """
    manifest = read_manifest(root)
    searcher = Searcher(root, embedder)
    documents = sorted((Path(d.path).name, d.sha256, d.passages) for d in searcher.documents())
    passages: list[tuple[str, str | None]] = []
    while len(passages) < manifest.passages:
        _, page = searcher.list_passages(limit=100, offset=len(passages))
        if not page:
            break
        passages += [(p.passage_id, p.topic) for p in page]
    results = []
    for query, mode in QUERIES:
        hits = searcher.search(query, k=10, mode=mode).hits
        results.append([(hit.passage_id, hit.score) for hit in hits])
    return {
        "counts": (manifest.documents, manifest.passages),
        "documents": documents,
        "passages": sorted(passages, key=lambda item: item[0]),
        "results": results,
    }


def difference(found: dict, old: dict, new: dict) -> str:
    """Name what sets a state apart from both the old and the new one."""
    parts = []
    for name, expected in (("old", old), ("new", new)):
        keys = [key for key in expected if not same_state(found, expected, (key,))]
        parts.append(f"{name}: {', '.join(keys)} differ")
    return "; ".join(parts)


def same_state(found: dict, expected: dict, keys: Sequence[str] | None = None) -> bool:
    """Compare two index states (or only `keys`); scores may differ by float noise, ranks not."""
    keys = list(expected) if keys is None else list(keys)
    if any(found[key] != expected[key] for key in keys if key != "results"):
        return False
    if "results" not in keys:
        return True
    for got, want in zip(found["results"], expected["results"], strict=True):
        if [pid for pid, _ in got] != [pid for pid, _ in want]:
            return False
        if any(abs(a - b) > SCORE_TOLERANCE for (_, a), (_, b) in zip(got, want, strict=True)):
            return False
    return True


def index_command(docs: Path, root: Path, topic_model: str | None) -> list[str]:
    """The `vnsearch index --prune --json` command line that updates `root` from `docs`."""
    command = [sys.executable, "-m", "api.cli", "index", str(docs), "--index", str(root)]
    command += ["--prune", "--json"]
    if topic_model:
        command += ["--topic-model", topic_model]
    return command


def start(command: Sequence[str], code: Path) -> subprocess.Popen:
    """Start a command in `code` in its own session, so that its helpers can be found."""
    return subprocess.Popen(
        command,
        cwd=code,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )


def session_processes(session: int) -> list[int]:
    """Return the ids of live processes in a session (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def phase_of(root: Path, base_generation: int, exited_first: bool) -> str:
    """Name the step the killed writer had reached, from what it left on disk."""
    if exited_first:
        return PHASES[3]
    manifest = read_manifest(root)
    if manifest is not None and manifest.generation > base_generation:
        return PHASES[2]
    if list(root.glob("gen-*.tmp")) or generation_dir(root, base_generation + 1).exists():
        return PHASES[1]
    return PHASES[0]


@dataclass
class Setup:
    """What every trial shares: the code and documents of the writers, the states to expect."""

    code: Path
    docs: Path
    base: Path
    base_generation: int
    old_state: dict
    new_state: dict
    embedder: Any
    classifier: Any
    topic_model: str | None

    def command(self, root: Path) -> list[str]:
        """The `vnsearch index` command line that updates `root`."""
        return index_command(self.docs, root, self.topic_model)


def measure_timeline(
    command: Sequence[str], root: Path, base_generation: int, code: Path
) -> Timeline:
    """Run the update once without a kill, noting when it first wrote and when it published.

    Raises:
        InvalidInputError: The update failed.
    """
    marks: dict[str, float] = {}
    done = threading.Event()
    started = time.monotonic()

    def watch() -> None:
        while not done.is_set():
            now = time.monotonic() - started
            if "first_write" not in marks and list(root.glob("gen-*.tmp")):
                marks["first_write"] = now
            manifest = read_manifest(root)
            if "published" not in marks and manifest and manifest.generation > base_generation:
                marks["published"] = now
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    process = start(command, code)
    _, stderr = process.communicate(timeout=RUN_TIMEOUT_S)
    finished = time.monotonic() - started
    done.set()
    watcher.join()
    if process.returncode != 0:
        raise InvalidInputError(f"the update failed: {stderr.decode(errors='replace')[-2000:]}")
    return Timeline(
        first_write=round(marks.get("first_write", finished), 2),
        published=round(marks.get("published", finished), 2),
        finished=round(finished, 2),
    )


def prepare(work: Path, corpus: Path) -> tuple[Path, Path]:
    """Write the old and new document folders from real corpus files."""
    old, new = work / "docs-old", work / "docs-new"
    for folder in (old, new):
        folder.mkdir(parents=True)
    report = (corpus / REPORT).read_text(encoding="utf-8")
    if EDIT[0] not in report:
        raise InvalidInputError(f"{corpus / REPORT} no longer contains {EDIT[0]!r}")
    (old / "report.txt").write_text(report, encoding="utf-8")
    shutil.copy(corpus / REMOVED, old / Path(REMOVED).name)
    (new / "report.txt").write_text(report.replace(*EDIT), encoding="utf-8")
    for name in ADDED:
        shutil.copy(corpus / name, new / Path(name).name)
    return old, new


def kill_moments(trials: int, timeline: Timeline, rng: random.Random) -> list[Kill]:
    """Draw `trials` kill moments, stratified: half over the whole run from its start, a quarter
    over the writing part from the first write, a quarter from the publish step to the end.

    The later strata are timed from the moment the writer is seen reaching their step, not from
    the start, because a run's length varies with the machine's load by more than they last.
    """
    windows = [
        ("start", timeline.finished),
        ("first write", timeline.published - timeline.first_write),
        ("publish", timeline.finished - timeline.published),
    ]
    counts = [trials - trials // 2, trials // 4, trials // 2 - trials // 4]
    kills = []
    for (anchor, length), count in zip(windows, counts, strict=True):
        kills += [Kill(anchor, length * (i + rng.random()) / count) for i in range(count)]
    return kills


def run_crash_test(
    trials: int,
    seed: int,
    work: Path,
    corpus: Path = DEFAULT_CORPUS,
    topic_model: str | None = None,
    log: Any = None,
) -> CrashReport:
    """Run the crash test in `work` (which must be empty or missing).

    Args:
        trials: How many kills.
        seed: Seed of the random delays.
        work: Folder for documents and indexes.
        corpus: The shared corpus.
        topic_model: Topic model folder for the indexer (None: the shipped one).
        log: A writable text stream for progress lines, or None.

    Returns:
        Every trial's phase, the state found and any problem.
    """
    from api.loading import load_classifier, load_embedder

    began = time.monotonic()
    code = snapshot_code(work)
    rng = random.Random(seed)
    old_docs, new_docs = prepare(work, corpus)
    # The old and new documents live at one path, as a user's folder does between two runs.
    docs = work / "docs"
    base, reference, root = work / "base-index", work / "reference-index", work / "index"
    shutil.copytree(old_docs, docs)
    process = start(index_command(docs, base, topic_model), code)
    _, stderr = process.communicate(timeout=RUN_TIMEOUT_S)
    if process.returncode != 0:
        raise InvalidInputError(f"the base index failed: {stderr.decode(errors='replace')[-2000:]}")
    base_generation = read_manifest(base).generation
    embedder = load_embedder(read_manifest(base).model.name)
    classifier = load_classifier(topic_model)
    old_state = index_state(base, embedder)
    shutil.rmtree(docs)
    shutil.copytree(new_docs, docs)
    shutil.copytree(base, reference)
    timeline = measure_timeline(
        index_command(docs, reference, topic_model), reference, base_generation, code
    )
    new_state = index_state(reference, embedder)
    if same_state(new_state, old_state):
        raise InvalidInputError("the update changes nothing; the trials would prove nothing")
    setup = Setup(
        code, docs, base, base_generation, old_state, new_state, embedder, classifier, topic_model
    )
    report = CrashReport(timeline=timeline)
    if log:
        log.write(f"uninterrupted update: {asdict(timeline)} (seconds from start)\n")
    for number, kill in enumerate(kill_moments(trials, timeline, rng), start=1):
        trial = kill_and_check(number, kill, root, setup)
        report.trials.append(trial)
        if log:
            log.write(
                f"trial {trial.number:>3}: kill {trial.kill.delay:5.2f} s after "
                f"{trial.kill.anchor:<11} (at {trial.killed_at:6.2f} s): {trial.phase:<24} "
                f"state {trial.state:<5} rerun {'ok' if trial.rerun_ok else 'FAILED'}"
                f"{'' if trial.problem is None else '  PROBLEM: ' + trial.problem}\n"
            )
            log.flush()
    report.seconds = time.monotonic() - began
    return report


def reached(anchor: str, root: Path, base_generation: int) -> bool:
    """Whether a writer updating `root` has reached `anchor` (see ANCHORS)."""
    if anchor == "start":
        return True
    if anchor == "first write":
        return bool(list(root.glob("gen-*.tmp")))
    manifest = read_manifest(root)
    return manifest is not None and manifest.generation > base_generation


def kill_and_check(number: int, kill: Kill, root: Path, setup: Setup) -> Trial:
    """Restore the base index at `root`, start the update, SIGKILL it at `kill`, then check the
    index and re-run the update."""
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(setup.base, root)
    old_state, new_state, embedder = setup.old_state, setup.new_state, setup.embedder
    base_generation = setup.base_generation
    process = start(setup.command(root), setup.code)
    started = time.monotonic()
    anchor_at: float | None = None
    exited_first = False
    while True:
        now = time.monotonic() - started
        if process.poll() is not None:
            exited_first = True
            break
        if anchor_at is None and reached(kill.anchor, root, base_generation):
            anchor_at = now
        if anchor_at is not None and now >= anchor_at + kill.delay:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            break
        if now > RUN_TIMEOUT_S:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            raise InvalidInputError(f"the update did not end within {RUN_TIMEOUT_S} s")
        time.sleep(0.002)
    killed_at = round(time.monotonic() - started, 2)
    process.stderr.close()
    # The writer's helper processes (word segmentation) must not outlive it for long.
    deadline = time.monotonic() + 5
    while session_processes(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    leftovers = session_processes(process.pid)
    if leftovers:
        os.killpg(process.pid, signal.SIGKILL)
    phase = phase_of(root, base_generation, exited_first)
    trial = Trial(number, kill, killed_at, phase, "?", False, len(leftovers))
    try:
        found = index_state(root, embedder)
    except VnsearchError as exc:
        trial.problem = f"the index does not load after the kill: {exc}"
        return trial
    generation = read_manifest(root).generation
    if same_state(found, old_state) and generation == base_generation:
        trial.state = "old"
    elif same_state(found, new_state) and generation > base_generation:
        trial.state = "new"
    else:
        trial.problem = (
            f"generation {generation} holds neither the old nor the new state "
            f"({difference(found, old_state, new_state)})"
        )
        return trial
    try:
        index_paths([setup.docs], root, embedder, setup.classifier, prune=True, segment_workers=0)
        with writer_lock(root):  # the killed writer's lock is free again
            pass
        trial.rerun_ok = same_state(index_state(root, embedder), new_state)
    except VnsearchError as exc:
        trial.problem = f"re-running the update failed: {exc}"
        return trial
    if not trial.rerun_ok:
        trial.problem = "re-running the update did not reach the new state"
    elif list(root.glob("gen-*.tmp")):
        trial.problem = "a crashed writer's temporary generation was left behind"
    return trial


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: run the trials and print the figures.

    Returns:
        0 when every trial found a readable old or new index and re-ran cleanly, 1 otherwise,
        2 for a usage error.
    """
    parser = argparse.ArgumentParser(prog="python -m eval.crash_test", description=__doc__)
    parser.add_argument("--trials", type=int, default=20, help="Kills (at least 2).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the random delays.")
    parser.add_argument("--corpus", default=str(DEFAULT_CORPUS), help="The shared corpus.")
    parser.add_argument("--topic-model", help="Topic model folder (default: the shipped one).")
    parser.add_argument("--work", help="Empty folder to work in (default: a temporary one).")
    parser.add_argument("--json", action="store_true", help="Print the report as JSON.")
    args = parser.parse_args(argv)
    if args.trials < 2:
        sys.stderr.write("error: --trials must be at least 2\n")
        return 2
    temporary = None if args.work else tempfile.mkdtemp(prefix="vnsearch-crash-")
    work = Path(args.work or temporary)
    try:
        report = run_crash_test(
            args.trials,
            args.seed,
            work,
            Path(args.corpus),
            args.topic_model,
            log=None if args.json else sys.stdout,
        )
    except (InvalidInputError, OSError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    finally:
        if temporary:
            shutil.rmtree(temporary, ignore_errors=True)
    summary = report.to_json()
    if args.json:
        sys.stdout.write(json.dumps(summary, ensure_ascii=False) + "\n")
    else:
        phases = ", ".join(f"{summary['phases'].get(p, 0)} {p}" for p in PHASES)
        sys.stdout.write(
            f"{summary['trials']} trials in {summary['seconds']} s: {phases}; "
            f"found old {summary['states'].get('old', 0)}, new {summary['states'].get('new', 0)}; "
            f"{summary['failures']} failures; "
            f"{summary['leftover_processes']} helper processes outlived their writer\n"
        )
    return 1 if summary["failures"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
