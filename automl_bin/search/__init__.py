"""Search mechanisms shared by strategies (import torch)."""
