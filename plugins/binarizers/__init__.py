"""Built-in binarizers."""
