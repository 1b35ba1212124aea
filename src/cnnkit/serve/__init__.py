"""`cnnkit serve`: a FastAPI app (`app.create_app`) and the static explorer page it serves.

A leaf that only translates: nothing in cnnkit imports it, and it imports no torch. `app` holds
the routes, `schemas` the bodies, `service` the uploads and the JSON encoding, `server` the
socket; the model side is `cnnkit.inspect.explorer` for a run (torch) and
`cnnkit.inspect.predictor` for an .onnx model (predictions only, no torch). Its guards live in
`security`, its batching in `batching`.
"""
