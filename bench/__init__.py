"""Benchmarks (`make bench`, results in `bench/results/` and docs/benchmarks.md): the API under
load, report builds, the store, sweep scaling and GPU packing; never part of `make test`."""
