"""Training methods as LightningModules."""

from noisylab.methods.standard import NonFiniteLossError, StandardMethod

__all__ = ["NonFiniteLossError", "StandardMethod"]
