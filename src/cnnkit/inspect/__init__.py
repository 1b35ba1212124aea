"""Looking inside a trained network: filters, feature maps, top patches, Grad-CAM, invariance.

Computing lives in `views`, `gradcam`, `patches`, `invariance` and `evaluation` (numpy arrays
and JSON-ready dicts); `draw` turns arrays into Pillow images; `report` assembles one HTML file.
`receptive` is pure Python: where in the input an output unit looks.
"""
