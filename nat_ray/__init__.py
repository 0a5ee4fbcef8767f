"""nat_ray: Negative-Aware Training (NAT, arXiv 2402.11651) for LLM agents, as a distributed system on Ray."""

from nat_ray.types import SCHEMA_VERSION, Example, Label, Trajectory, Turn

__all__ = ["SCHEMA_VERSION", "Example", "Label", "Trajectory", "Turn"]
__version__ = "0.1.0"
