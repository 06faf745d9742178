"""`wavediff serve`: a local web playground for a checkpoint (samples, interpolations, trajectories)."""

from .app import PlaygroundServer, bind
from .generation import MAX_IMAGES, Playground, bounded_seeds, resolve_checkpoint, slerp

__all__ = ["MAX_IMAGES", "Playground", "PlaygroundServer", "bind", "bounded_seeds", "resolve_checkpoint", "slerp"]
