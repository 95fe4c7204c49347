"""Queue, workers, leases, heartbeats, cancellation, watchdog and scheduler."""
