"""Checkpoint and restore through CRIU (`criu swrk`, its RPC interface).

Imported only by `pyrun checkpoint` and `pyrun restore`: nothing on the
create/run/exec path needs it.
"""
