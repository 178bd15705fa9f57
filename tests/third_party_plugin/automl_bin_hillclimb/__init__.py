"""A small third-party strategy package, installed by automl-bin's tests."""
