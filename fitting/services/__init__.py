"""Writes of the fitting app, by concern (import from the concern's module).

- ``start``: validate a request, create the job, enqueue it (``fitting_start``).
- ``reuse``: the result cache and step reuse (a repeat completes, a shared prefix is reused).
- ``progress``: the worker's writes, each conditional on the attempt still being current.
- ``lifecycle``: cancel, the stale-job sweep, requeue, reprocess.
- ``erasure``: delete a job, a photo, a user, with their files (the retention too).
- ``items``: the catalogue's item writes.
- ``rating``: the owner's rating of a completed job.
"""
