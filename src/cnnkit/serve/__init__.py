"""`cnnkit serve`: a FastAPI app (`app.create_app`) and the static explorer page it serves.

A leaf: nothing in cnnkit imports it. Its guards live in `security`, its batching in `batching`.
"""
