"""Building blocks shared by search spaces and strategies (import torch)."""
