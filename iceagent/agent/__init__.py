"""The Trio layer: the agent nursery, session runners, the supervisor and IceStream."""

from .core import Agent, open_agent
from .stream import IceStream

__all__ = ["Agent", "IceStream", "open_agent"]
