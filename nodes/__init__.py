"""Inference nodes: the gRPC InferenceService over llama.cpp or transformers backends, hardware
profiles and compute pacing, energy metering, and the offline tiny-model builders.

Importing `nodes` (or `nodes.server`) pulls in neither torch nor llama_cpp; a backend imports
its library when it is created.
"""
