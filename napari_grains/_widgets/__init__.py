"""The napari face: dock widgets (with ``_napari_reader`` and ``_sample_data``, the only modules that
import napari or Qt).

* :mod:`~napari_grains._widgets.extraction`: pick an image and a model, preview the edge
  stack, run Net1 and the Net2 iterations, turn an iteration into an editable boundaries layer.
* :mod:`~napari_grains._widgets.correction`: grain-aware editing of a boundaries layer.
* :mod:`~napari_grains._widgets.measurement`: grains, per-grain table, statistics, exports.
* :mod:`~napari_grains._widgets.training`: train Net1 and Net2 on synthetic data.
* :mod:`~napari_grains._widgets._common`: helpers the docks share.

Every dock is registered in ``napari_grains/napari.yaml``.
"""
