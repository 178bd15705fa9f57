"""Registration of the built-in 1-bit binarizers ``xnor`` and ``recon``.

Entry point ``builtin_binarizers = "automl_bin_plugins.binarizers.builtin"``. Importing this
module stays torch-free (the binarizer modules define their torch parts on first use), so that
``automl-bin plugins`` and ``automl-bin check`` do not pay for importing torch.
"""

from __future__ import annotations

from automl_bin import hookimpl
from automl_bin.hookspecs import Register
from automl_bin_plugins.binarizers.recon import ReconBinarizer
from automl_bin_plugins.binarizers.xnor import XnorBinarizer


@hookimpl
def register_binarizers(register: Register) -> None:
    register("xnor", XnorBinarizer)
    register("recon", ReconBinarizer)
