"""The `lrod` command-line client: job-types, submit, get, list, cancel,
delete, wait and watch, over gRPC to a running server."""
