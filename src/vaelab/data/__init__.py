"""Datasets: the registry and its sources, downloading, IDX parsing, image folders, preprocessing into uint8 shards."""
