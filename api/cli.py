"""The `vnsearch` command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from api.loading import load_classifier, load_embedder, open_searcher
from nlp.errors import VnsearchError

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
eval_app = typer.Typer(no_args_is_help=True, help="Evaluate the classifier or the search.")
app.add_typer(eval_app, name="eval")


def _emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")


def _read_records(
    texts: list[str] | None, input_file: Path | None, field: str = "text"
) -> list[tuple[str, dict]]:
    """Rows from arguments and/or a JSON Lines file (objects with `field`) or plain text lines.

    Each row is `(where, row)`: where it came from ("argument 2", "FILE line 7", for messages)
    and a dict with `field`, plus the other fields of its JSON object. A file may start with a
    UTF-8 byte order mark.

    Raises:
        InvalidInputError: The file cannot be read, a JSON line is not an object whose `field`
            is a string, or there is no input at all.
    """
    from nlp.errors import InvalidInputError

    found = [(f"argument {n}", {field: text}) for n, text in enumerate(texts or [], start=1)]
    if input_file is not None:
        try:
            lines = input_file.read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInputError(f"cannot read {input_file}: {exc}") from None
        for number, line in enumerate(lines, start=1):
            where = f"{input_file} line {number}"
            if not line.strip():
                continue
            if line.lstrip().startswith(("{", "[")):
                row = _json_row(line, where, field)
                if row is not None:
                    found.append((where, row))
                    continue
            found.append((where, {field: line}))
    if not found:
        raise InvalidInputError("no input: give TEXT arguments or --input FILE")
    for where, row in found:
        try:
            row[field].encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInputError(
                f"{where} is not valid UTF-8 text; pass UTF-8 text or save the file as UTF-8"
            ) from None
    return found


def _json_row(line: str, where: str, field: str) -> dict | None:
    """The JSON object of a line, checked; None for a line that is not JSON (plain text)."""
    from nlp.errors import InvalidInputError

    try:
        row = json.loads(line)
    except ValueError:
        if line.lstrip().startswith("["):
            return None  # text that happens to open with a bracket
        raise InvalidInputError(
            f'{where}: not valid JSON; write one object per line, e.g. {{"{field}": "..."}}'
        ) from None
    if not isinstance(row, dict) or not isinstance(row.get(field), str):
        raise InvalidInputError(
            f"{where}: expected a JSON object whose {field!r} is a string, "
            f'e.g. {{"{field}": "..."}}'
        )
    for key in ("section", "file"):
        if row.get(key) is not None and not isinstance(row[key], str):
            raise InvalidInputError(f"{where}: {key!r} must be a string (or left out)")
    return row


def _read_texts(
    texts: list[str] | None, input_file: Path | None, field: str = "text"
) -> list[tuple[str, str]]:
    """`(where, text)` pairs from arguments and/or a JSON Lines file (field `field`) or plain
    text lines (`_read_records`)."""
    return [(where, row[field]) for where, row in _read_records(texts, input_file, field)]


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to read.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="JSON Lines, one passage a line.")
    ] = False,
    workers: Annotated[int, typer.Option(help="Segmentation processes (0 = all cores).")] = 0,
) -> None:
    """Read documents and print the passages that would be indexed."""
    from nlp.paragraphs import split_passages
    from nlp.reader import ReadFailure, read_paths
    from nlp.segment import joined, segment_texts

    read_any = False
    for item in read_paths(paths):
        if isinstance(item, ReadFailure):
            typer.echo(f"skipped {item.path}: {item.error}", err=True)
            continue
        read_any = True
        passages = split_passages(item)
        tokens = segment_texts([p.text for p in passages], workers=workers)
        for passage, words in zip(passages, tokens, strict=True):
            record = dict(vars(passage), tokens=words, segmented=joined(words))
            if as_json:
                _emit(record)
            else:
                typer.echo(
                    f"{passage.doc}#{passage.paragraph} [{passage.section}]\n  {passage.text}"
                )
    if not read_any:
        raise typer.Exit(1)


@app.command()
def embed(
    texts: Annotated[list[str] | None, typer.Argument(help="Texts to embed.")] = None,
    input_file: Annotated[
        Path | None, typer.Option("--input", help="JSON Lines with `text`.")
    ] = None,
    kind: Annotated[str, typer.Option(help="passage or query.")] = "passage",
    model: Annotated[str | None, typer.Option(help="sentence-transformers name or path.")] = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda.")] = None,
    out: Annotated[Path, typer.Option(help="Output .npy file.")] = Path("embeddings.npy"),
) -> None:
    """Embed texts into an (n, dim) float32 .npy array, in input order."""
    import numpy as np

    from nlp.errors import InvalidInputError

    if kind not in ("passage", "query"):
        raise InvalidInputError(f"unknown --kind {kind!r}; use passage or query")
    items = [text for _, text in _read_texts(texts, input_file)]
    embedder = load_embedder(model, device)
    vectors = embedder.embed_queries(items) if kind == "query" else embedder.embed_passages(items)
    np.save(out, np.asarray(vectors, dtype=np.float32), allow_pickle=False)
    typer.echo(f"wrote {out}: {vectors.shape[0]} x {vectors.shape[1]} ({embedder.name})", err=True)


@app.command()
def index(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to index.")],
    index_dir: Annotated[Path, typer.Option("--index", help="Index folder.")],
    model: Annotated[str | None, typer.Option(help="Embedding model name or path.")] = None,
    topic_model: Annotated[str | None, typer.Option(help="Topic model folder.")] = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda.")] = None,
    prune: Annotated[bool, typer.Option(help="Drop documents whose files are gone.")] = False,
    dense: Annotated[
        str,
        typer.Option(
            help="auto (fastscan, IVF from 200,000 passages), flat (exact), fastscan (4-bit "
            "scan, exact rescoring), sq8 (8-bit scan, exact rescoring), hnsw or ivf."
        ),
    ] = "auto",
    workers: Annotated[
        int | None,
        typer.Option(
            help="Processes reading and segmenting while the embedder runs (default: 0 on a "
            "CPU, one per core beside a GPU)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Index documents incrementally: unchanged files are skipped, changed ones replaced."""
    from tqdm import tqdm

    from index.indexer import default_segment_workers, index_paths
    from index.store import read_manifest
    from nlp.errors import InvalidInputError
    from nlp.reader import SUPPORTED_SUFFIXES

    if workers is not None and workers < 0:
        raise InvalidInputError(
            f"--workers must be 0 (segment in this process) or more, not {workers}"
        )
    manifest = read_manifest(index_dir)
    embedder = load_embedder(model or (manifest.model.name if manifest else None), device)
    classifier = load_classifier(topic_model)
    bar = tqdm(total=0, unit="file", disable=as_json or not sys.stderr.isatty(), file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    report = index_paths(
        paths,
        index_dir,
        embedder,
        classifier,
        prune=prune,
        dense_kind=dense,
        segment_workers=default_segment_workers(embedder.device) if workers is None else workers,
        progress=progress,
    )
    bar.close()
    summary = {
        "files_indexed": report.files_indexed,
        "files_skipped": report.files_skipped,
        "files_failed": [{"path": f.path, "error": f.error} for f in report.files_failed],
        "files_pruned": report.files_pruned,
        "passages": report.passages,
        "passages_embedded": report.passages_embedded,
        "seconds": round(report.seconds, 2),
    }
    if as_json:
        _emit(summary)
    else:
        for failure in report.files_failed:
            typer.echo(f"skipped {failure.path}: {failure.error}", err=True)
        pruned = f", {report.files_pruned} pruned" if prune else ""
        typer.echo(
            f"{index_dir}: {_count(report.files_indexed, 'file')} indexed, "
            f"{report.files_skipped} unchanged, {len(report.files_failed)} failed{pruned}; "
            f"{_count(report.passages, 'passage')} ({report.passages_embedded} embedded) "
            f"in {report.seconds:.1f} s"
        )
    found = report.files_indexed + report.files_skipped + len(report.files_failed)
    if not found and not prune:
        typer.echo(
            f"error: no {', '.join(SUPPORTED_SUFFIXES)} files found in "
            f"{', '.join(map(str, paths))}; pass the files or folders holding your documents",
            err=True,
        )
        raise typer.Exit(1)
    if report.files_failed and not (report.files_indexed or report.files_skipped):
        raise typer.Exit(1)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _print_result(result: dict, as_json: bool) -> None:
    if as_json:
        _emit(result)
        return
    typer.echo(f"{result['total']} matches for {result['query']!r} ({result['mode']})")
    for hit in result["hits"]:
        topic = f" [{hit['topic']}]" if hit["topic"] else ""
        where = f" — {hit['section']}" if hit["section"] else ""
        typer.echo(f"{hit['rank']:>3}. {hit['title']}{where}{topic}")
        typer.echo(f"     {hit['doc']}#{hit['paragraph']}  score {hit['score']:.4f}")
        snippet = hit["highlight"].replace("<mark>", "\033[1m").replace("</mark>", "\033[0m")
        typer.echo(f"     {snippet}")


@app.command()
def search(
    query: Annotated[str | None, typer.Argument(help="What to look for.")] = None,
    index_dir: Annotated[Path, typer.Option("--index", help="Index folder.")] = Path("index"),
    k: Annotated[int, typer.Option("-k", help="Hits to return (1..100).")] = 10,
    offset: Annotated[int, typer.Option(help="Hits to skip.")] = 0,
    mode: Annotated[str, typer.Option(help="hybrid, dense or lexical.")] = "hybrid",
    topic: Annotated[str | None, typer.Option(help="Only this topic.")] = None,
    doc: Annotated[str | None, typer.Option(help="Only documents matching this glob.")] = None,
    section: Annotated[str | None, typer.Option(help="Only sections containing this.")] = None,
    queries: Annotated[Path | None, typer.Option(help="Many queries: text or JSON Lines.")] = None,
    model: Annotated[str | None, typer.Option(help="Embedding model (must match).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Search the index by meaning and exact terms (with or without diacritics)."""
    from index.search import validate_options, validate_query
    from nlp.errors import InvalidInputError

    mode, topic = mode.lower(), topic.lower() if topic else topic
    validate_options(mode, k, offset, topic)
    items = _read_texts([query] if query is not None else None, queries, field="query")
    # A bad query is reported where it stands and the others are answered; checked before the
    # model takes seconds to load.
    problems: dict[int, str] = {}
    for n, (where, item) in enumerate(items):
        try:
            validate_query(item)
        except InvalidInputError as exc:
            problems[n] = f"{where}: {exc}"
    if len(problems) == len(items):
        raise InvalidInputError("; ".join(problems.values()))
    searcher = open_searcher(index_dir, model, device)
    good = [item for n, (_, item) in enumerate(items) if n not in problems]
    results = iter(searcher.batch_search(good, k, offset, mode, topic, doc, section))
    for n, (_, item) in enumerate(items):
        if n in problems:
            if as_json:
                _emit({"query": item, "error": problems[n]})
            typer.echo(f"error: {problems[n]}", err=True)
        else:
            _print_result(next(results).to_json(), as_json)
    if problems:
        raise typer.Exit(1)


@app.command()
def passages(
    index_dir: Annotated[Path, typer.Option("--index", help="Index folder.")] = Path("index"),
    topic: Annotated[str | None, typer.Option(help="Only this topic.")] = None,
    doc: Annotated[str | None, typer.Option(help="Only documents matching this glob.")] = None,
    section: Annotated[str | None, typer.Option(help="Only sections containing this.")] = None,
    limit: Annotated[int, typer.Option(help="Passages to list (1..100).")] = 20,
    offset: Annotated[int, typer.Option(help="Passages to skip.")] = 0,
    facets: Annotated[bool, typer.Option(help="Per-document topic counts instead.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON Lines.")] = False,
) -> None:
    """List topic-tagged passages with their document and section, or per-document facets."""
    from index.search import Searcher
    from nlp.errors import InvalidInputError

    topic = topic.lower() if topic else topic
    searcher = Searcher(index_dir, None)
    if facets:
        if topic is not None or section is not None:
            raise InvalidInputError(
                "--facets counts every topic of each document; drop --topic and --section "
                "(--doc picks the documents)"
            )
        for document in searcher.documents(doc):
            record = vars(document)
            if as_json:
                _emit(record)
            else:
                counts = ", ".join(f"{t} {n}" for t, n in sorted(document.topics.items()))
                typer.echo(f"{document.path} ({document.passages} passages): {counts}")
        return
    total, page = searcher.list_passages(topic, doc, section, limit, offset)
    if not as_json:
        typer.echo(f"{total} passages")
    for record in page:
        if as_json:
            _emit(vars(record))
        else:
            where = f" — {record.section}" if record.section else ""
            typer.echo(f"[{record.topic}] {record.doc}#{record.paragraph}{where}")
            typer.echo(f"     {record.text[:300]}")


@app.command()
def classify(
    texts: Annotated[list[str] | None, typer.Argument(help="Paragraphs to classify.")] = None,
    input_file: Annotated[
        Path | None,
        typer.Option("--input", help="JSON Lines with `text` and optional `section`, `file`."),
    ] = None,
    model: Annotated[str | None, typer.Option(help="Topic model folder.")] = None,
    documents: Annotated[
        Path | None,
        typer.Option(
            help="Corpus folder: a row whose `file` is there is read within its document and "
            "under its heading, as `vnsearch index` tags it. Default: ../shared/corpus."
        ),
    ] = None,
    alone: Annotated[
        bool, typer.Option("--alone", help="Read every row by itself, ignoring `file`.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON Lines.")] = False,
) -> None:
    """Tag paragraphs with a topic and the score of every topic.

    Rows of `--input` may name their heading (`section`) and their document (`file`, a path
    under the corpus folder); a row whose document is found is read as the index reads it.
    """
    from models.topics import predict_within_documents
    from nlp.errors import InvalidInputError
    from nlp.normalize import has_words, normalize_text

    corpus = _corpus_folder(documents, default=not alone, alone=alone)
    records = _read_records(texts, input_file)
    for where, row in records:
        if not has_words(row["text"]):
            raise InvalidInputError(f"{where} has no words to classify; give paragraph text")
    rows = [row for _, row in records]
    sections = [normalize_text(row.get("section") or "") for row in rows]
    files = [row.get("file") or None for row in rows]
    classifier = load_classifier(model)
    if corpus is not None and any(files):
        predictions, within = predict_within_documents(
            classifier, [row["text"] for row in rows], sections, files, corpus
        )
        typer.echo(
            f"vnsearch: {within} of {len(rows)} rows read within their documents under {corpus}",
            err=True,
        )
    else:
        predictions = classifier.predict([row["text"] for row in rows], sections=sections)
    for prediction in predictions:
        if as_json:
            _emit({"topic": prediction.topic, "scores": prediction.scores})
        else:
            typer.echo(f"{prediction.topic}\t{prediction.scores[prediction.topic]:.3f}")


def _corpus_folder(documents: Path | None, *, default: bool, alone: bool = False) -> Path | None:
    """The corpus folder whose files labelled rows name: `--documents` once checked, else
    `../shared/corpus` when `default` is set and the folder is there, else None."""
    from models.topics import DEFAULT_SHARED_DIR
    from nlp.errors import InvalidInputError

    if alone and documents is not None:
        raise InvalidInputError("--alone reads rows without their documents; drop --documents")
    if documents is None:
        shared = DEFAULT_SHARED_DIR / "corpus"
        return shared if default and shared.is_dir() else None
    if not documents.is_dir():
        raise InvalidInputError(f"--documents {documents} is not a folder; pass the corpus")
    return documents


def _examples(data: list[Path] | None) -> list:
    from models.topics import default_training_examples, load_labelled

    if not data:
        return default_training_examples()
    return [example for path in data for example in load_labelled(path)]


@app.command()
def train(
    out: Annotated[Path, typer.Option(help="Folder to write the model to.")],
    data: Annotated[
        list[Path] | None,
        typer.Option(
            help="Labelled JSON Lines (text, label[, file, section]); repeatable. "
            "Default: the shared dev labels, the sample report and models/topic_labels."
        ),
    ] = None,
    documents: Annotated[
        Path | None,
        typer.Option(
            help="Corpus folder holding the rows' `file`s: the model also learns each "
            "paragraph within its document, as `vnsearch index` tags it. Default with the "
            "default data: ../shared/corpus."
        ),
    ] = None,
) -> None:
    """Train a topic classifier and save it (no pickle) for `--model DIR`."""
    from models.embedder import embed_under_headings
    from models.topics import (
        document_contexts,
        example_vectors,
        shared_embedder,
        train_classifier,
    )

    examples = _examples(data)
    documents = _corpus_folder(documents, default=not data)
    options = {}
    if documents is not None:
        embedder = shared_embedder()
        own = example_vectors(examples, embedder)
        contexts = document_contexts(
            examples,
            documents,
            lambda passages: embed_under_headings(
                embedder, [p.text for p in passages], [p.section for p in passages]
            ),
            own,
        )
        options = {"embedder": embedder, "embeddings": own, "contexts": contexts}
    train_classifier(examples, **options).save(out)
    typer.echo(
        f"trained on {len(examples)} paragraphs"
        + (f", each also within its document under {documents}" if documents else "")
        + f"; saved to {out}"
    )


@eval_app.command("classify")
def eval_classify(
    data: Annotated[
        list[Path] | None, typer.Option(help="Labelled JSON Lines; repeatable.")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Topic model folder to evaluate.")] = None,
    cv: Annotated[
        int, typer.Option(help="Instead, grouped cross-validation with this many folds.")
    ] = 0,
    plot: Annotated[Path | None, typer.Option(help="Draw the confusion matrix (PNG).")] = None,
    documents: Annotated[
        Path | None,
        typer.Option(
            help="Corpus folder: classify each row whose `file` is there within its document "
            "and under its heading, as `vnsearch index` tags it. Default: ../shared/corpus "
            "when it is there."
        ),
    ] = None,
    alone: Annotated[
        bool,
        typer.Option(
            "--alone", help="Classify every row by itself, as given, ignoring its `file`."
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Accuracy, macro-F1, per-class report and confusion matrix of the topic classifier.

    Rows whose `file` is in the corpus are read as the index tags them: within their document,
    under their paragraph's heading. `--alone` reads each row by itself instead.
    """
    from eval.classify import evaluate, grouped_cross_validation, plot_confusion
    from nlp.errors import InvalidInputError

    if cv and documents is not None:
        raise InvalidInputError(
            "--cv reads every row alone; for the cross-validation within documents run "
            "python -m eval.train_topics --mode documents"
        )
    documents = _corpus_folder(documents, default=not alone and not cv, alone=alone)
    if not cv and not data and model is None:
        raise InvalidInputError(
            "the shipped model was trained on the default labels: pass --data FILE.jsonl with "
            "other rows, --model DIR for a model trained without them, or --cv N"
        )
    examples = _examples(data)
    if cv:
        result = grouped_cross_validation(examples, folds=cv)
    else:
        result = evaluate(load_classifier(model), examples, documents=documents)
    if plot is not None:
        plot_confusion(result, plot)
    if as_json:
        _emit(result)
        return
    typer.echo(
        f"n={result['n']} accuracy={result['accuracy']:.3f} macro-F1={result['macro_f1']:.3f}"
        + (
            f" ({result['in_documents']} read within their documents under {documents}, "
            f"{result['n'] - result['in_documents']} alone)"
            if documents is not None and not cv
            else " (each row read alone)"
        )
    )
    for label, row in result["per_class"].items():
        typer.echo(
            f"  {label:<18} P={row['precision']:.3f} R={row['recall']:.3f} "
            f"F1={row['f1']:.3f} n={row['support']}"
        )
    if "log_loss" in result:
        typer.echo(
            f"probabilities: log-loss={result['log_loss']:.3f} "
            f"expected calibration error={result['ece']:.3f}"
        )
    typer.echo(_confusion_text(result["confusion"]))


def _confusion_text(confusion: dict) -> str:
    """The confusion matrix as a table: gold labels down, predictions across."""
    labels = confusion["labels"]
    heads = [label[:6] for label in labels]
    lines = ["confusion (rows: gold, columns: predicted)"]
    lines.append(" " * 20 + "".join(f"{head:>8}" for head in heads))
    for label, row in zip(labels, confusion["matrix"], strict=True):
        lines.append(f"  {label:<18}" + "".join(f"{count:>8}" for count in row))
    return "\n".join(lines)


@app.command()
def serve(
    index_dir: Annotated[Path, typer.Option("--index", help="Index folder.")] = Path("index"),
    host: Annotated[str, typer.Option(help="Address to bind (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    model: Annotated[str | None, typer.Option(help="Embedding model (must match).")] = None,
    topic_model: Annotated[str | None, typer.Option(help="Topic model folder.")] = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda.")] = None,
) -> None:
    """Serve the search API and web page."""
    import uvicorn

    from api.app import create_app

    application = create_app(index_dir, model=model, topic_model=topic_model, device=device)
    typer.echo(f"vnsearch: serving {index_dir} at http://{host}:{port}/", err=True)
    uvicorn.run(application, host=host, port=port, log_level="warning")


@eval_app.command("search")
def eval_search(
    queries: Annotated[Path, typer.Option(help="Query set (JSON Lines).")] = Path(
        "eval/queries/search-eval.jsonl"
    ),
    index_dir: Annotated[Path, typer.Option("--index", help="Index folder.")] = Path("index"),
    k: Annotated[int, typer.Option("-k", help="Cut-off for nDCG and MRR.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Measure nDCG@k, MRR@k and Recall@k of the three search modes on a query set."""
    from eval.search import evaluate_search, load_queries

    report = evaluate_search(open_searcher(index_dir), load_queries(queries), k=k)
    if as_json:
        _emit({key: value for key, value in report.items() if key != "per_query"})
        return
    names = list(next(iter(report["modes"].values())).keys())
    typer.echo(
        f"{report['queries']} queries ({len(report['skipped'])} without judged passages "
        f"in this index)"
    )
    typer.echo("mode      " + "".join(f"{n:>11}" for n in names))
    for mode, metrics in report["modes"].items():
        typer.echo(f"{mode:<10}" + "".join(f"{metrics[n]:>11.3f}" for n in names))


def main() -> None:
    """Entry point: run the CLI, turning vnsearch errors into a message and exit code 2."""
    try:
        app()
    except VnsearchError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
