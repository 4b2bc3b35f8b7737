"""Datasets: the registry of named datasets and their sources, downloading, IDX parsing, preprocessing."""
