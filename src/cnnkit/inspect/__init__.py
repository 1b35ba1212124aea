"""Looking inside a trained network: filters, feature maps, top patches, Grad-CAM, invariance.

Computing lives in `views`, `gradcam`, `patches`, `invariance` and `evaluation` (numpy arrays
and JSON-ready dicts); `draw` turns arrays into Pillow images (tiles and grids), `charts` draws
the charts with matplotlib, and `colours` holds the one colour map per meaning that the CLI,
the report and the page share. `report` computes a report's contents and `report_html` writes
them as one HTML file. `receptive` is pure Python: where in the input an output unit looks.
"""
