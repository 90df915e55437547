"""Online retrieval: the published model, feature bank and per-scenario FAISS indexes behind HTTP.

``loader`` reads one version into memory (once per version, never per request), ``query`` answers one
user in one scenario from a loaded version, ``service`` holds the version in service and swaps it
atomically when ``publish`` moves ``current``, and ``app`` is the FastAPI application over them.
"""
