"""``napari-grains gui``: open napari with the extraction dock (and an image) ready."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "open napari with the grain-extraction dock (and IMAGE, if given)"

DESCRIPTION = """\
Open napari with napari-grains' extraction dock on the right and, if given, IMAGE loaded
through napari-grains' reader (PNG, JPEG, TIFF, DM3/DM4, MRC, SER/EMI, EMD, ...: the pixel
size goes on the layer's scale). Examples:
  napari-grains gui
  napari-grains gui micrograph.dm4
  napari-grains gui --sample tem
"""

SAMPLES = ("tem", "synthetic")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", nargs="?", type=Path, metavar="IMAGE",
                        help="a micrograph to open (optional)")
    parser.add_argument("--sample", choices=SAMPLES,
                        help="open one of napari-grains' sample images instead")
    parser.add_argument("--model", metavar="NAME_OR_FOLDER",
                        help="model to select in the dock (a shipped name or a folder)")


def build_viewer(image: Path | None = None, *, sample: str | None = None,
                 model: str | None = None, show: bool = True, viewer=None):
    """Create a napari viewer with the extraction dock docked and the image loaded.

    Parameters
    ----------
    image : Path, optional
        A micrograph file, read with napari-grains' reader.
    sample : {"tem", "synthetic"}, optional
        A sample to open (ignored when ``image`` is given).
    model : str, optional
        Model name or folder to select in the dock.
    show : bool
        Show the window (False for tests and scripts).
    viewer : napari.Viewer, optional
        Use this viewer instead of creating one.

    Returns
    -------
    (napari.Viewer, ExtractionWidget)

    Raises
    ------
    GrainsError
        When the image cannot be read (the message says why) or the model folder is missing.
    """
    import napari

    from napari_grains._napari_reader import micrograph_layer_data
    from napari_grains._widgets.extraction import ExtractionWidget
    from napari_grains.errors import GrainsError
    from napari_grains.io import read_image

    layer_data = None
    if image is not None:  # read first, so a bad file fails before a window opens
        layer_data = micrograph_layer_data(read_image(image))
    if model is not None and Path(model).suffix == "" and not Path(model).exists():
        from napari_grains.nets import list_models

        if model not in list_models() and model != "default":
            raise GrainsError(f"unknown model {model!r}; shipped models: "
                              f"{', '.join(list_models())}, or give a model folder.")
    if viewer is None:
        viewer = napari.Viewer(title="napari-grains", show=show)
    if layer_data is not None:
        data, kwargs, kind = layer_data
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    elif sample is not None:
        viewer.open_sample("napari-grains", sample)
    widget = ExtractionWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Grain boundary extraction", area="right")
    if model is not None:
        if widget.model_combo.findText(model) >= 0:
            widget.model_combo.setCurrentText(model)
        else:
            widget.add_model_folder(model)
    return viewer, widget


def run(args: argparse.Namespace) -> int:
    """Open the window and block until it is closed."""
    import napari

    build_viewer(args.image, sample=args.sample, model=args.model, show=True)
    napari.run()
    return 0
