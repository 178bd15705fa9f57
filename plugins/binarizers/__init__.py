"""Built-in binarizers: ``none`` (none.py) and the 1-bit ``xnor`` and ``recon`` (builtin.py)."""
