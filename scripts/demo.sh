#!/usr/bin/env bash
# Set up (see scripts/setup.sh) and run the main job on the bundled samples:
# extract grain boundaries from the authors' TEM image and from a synthetic image with known
# ground truth, measure the grains, export tables and plots, print the headline numbers.
set -euo pipefail
cd "$(dirname "$0")/.."
NAPARI_GRAINS_EXTRAS=${NAPARI_GRAINS_EXTRAS:-pyqt5,formats} bash scripts/setup.sh
OUT=${1:-napari-grains-demo}
exec .venv/bin/napari-grains run --demo --out "$OUT" --overwrite
