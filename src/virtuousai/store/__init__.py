"""Storage: engine and sessions, the tenant-scoped base repository, migrations and the run-queue drivers.

Nothing here imports a primitive or ``api/``.
"""
