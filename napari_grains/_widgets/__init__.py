"""The napari face: dock widgets (the only modules, with ``_reader`` and ``_sample_data``,
that import napari or Qt).

* :mod:`~napari_grains._widgets.extraction`: pick an image and a model, preview the edge
  stack, run Net1 and the Net2 iterations, turn an iteration into an editable boundaries layer.
* :mod:`~napari_grains._widgets.correction`: grain-aware editing of a boundaries layer.
"""
