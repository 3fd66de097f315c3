"""Clusters, deployments, snapshots, fragmentation and compaction (the serving core lands here)."""
