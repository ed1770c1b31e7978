"""The docks fit on the screen together: each one scrolls instead of growing the window."""

import pytest

pytestmark = pytest.mark.gui


def test_three_docks_keep_the_window_within_the_screen(make_napari_viewer, qtbot):
    from qtpy.QtWidgets import QApplication, QScrollArea

    from napari_grains._widgets.correction import CorrectionWidget
    from napari_grains._widgets.extraction import ExtractionWidget
    from napari_grains._widgets.measurement import MeasurementWidget

    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    screen = QApplication.primaryScreen().availableGeometry()
    window.resize(min(1200, screen.width()), min(800, screen.height()))
    docks = [cls(viewer) for cls in (ExtractionWidget, CorrectionWidget, MeasurementWidget)]
    for w in docks:
        viewer.window.add_dock_widget(w, name=type(w).__name__, area="right")
    qtbot.wait(200)
    # before, the three docks' minimum heights added up to ~2300 px and the window grew
    assert window.height() <= screen.height()
    for w in docks:
        area = w.scroll_area
        # each dock keeps a usable height (the walk-through once saw one squeezed to 69 px)
        assert area.height() >= min(screen.height() // 5 - 2,
                                    area.widget().minimumSizeHint().height())
        assert isinstance(area, QScrollArea)
        # what does not fit scrolls vertically; nothing is squeezed sideways
        assert area.widget().height() >= area.widget().minimumSizeHint().height()
        assert area.widget().width() >= area.widget().minimumSizeHint().width()
    ext = docks[0]
    ext._preview_timer.stop()
