"""automl-bin's built-in plugins (imported as ``automl_bin_plugins``).

Each subpackage is an entry point of the ``automl_bin`` group in pyproject.toml, registered the
same way a third-party plugin is. They depend on the core's interfaces only.
"""
