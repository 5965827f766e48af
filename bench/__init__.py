"""`make bench`: lrod measured against this machine's limits and against peer
job queues, in one run. Run as `python -m bench` (`--quick` for a smoke run)."""
