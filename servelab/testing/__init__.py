"""Real local servers and seeded checkpoints for tests, benchmarks and demos (no fakes)."""

from servelab.ports import free_port
from servelab.testing.checkpoints import write_llm_checkpoint
from servelab.testing.servers import ClusterProcess, NginxServer, SeaweedS3Server

__all__ = ["ClusterProcess", "NginxServer", "SeaweedS3Server", "free_port", "write_llm_checkpoint"]
