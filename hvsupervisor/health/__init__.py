"""Health: probes that mean "serving", liveness policy, and fleet metrics (doc/health.md)."""
