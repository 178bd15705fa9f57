"""``python -m automl_bin`` is the same CLI as ``automl-bin``."""

from automl_bin.cli import main

if __name__ == "__main__":
    main(prog_name="automl-bin")
