"""Measure the classifier and the search on labelled data; benchmarks live beside."""
