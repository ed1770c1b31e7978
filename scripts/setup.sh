#!/usr/bin/env bash
# Set up everything napari-grains needs on a fresh Debian machine (idempotent).
#  - Debian packages for Qt under Xvfb (only when missing and when we are root)
#  - a virtual environment in .venv with torch 2.13.0 (CPU) first, then the package
#    with its Qt binding and test extras.
set -euo pipefail
cd "$(dirname "$0")/.."

DEB_PKGS="xvfb libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxcb-render-util0 \
libxkbcommon-x11-0 libxcb-image0 libxcb-randr0 libxcb-shape0 libxcb-xfixes0 libgl1 libegl1 \
libfontconfig1 libdbus-1-3"
missing=""
for p in $DEB_PKGS; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "[setup] installing Debian packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
  else
    echo "[setup] WARNING: missing Debian packages (GUI tests need them):$missing" >&2
    echo "[setup]          install them with: sudo apt-get install$missing" >&2
  fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python
"$VPY" -m pip install -q --upgrade pip >/dev/null
# torch first, pinned: it resolves to a local CPU wheel; an unpinned torch pulls a CUDA build.
"$VPY" -c "import torch" 2>/dev/null || "$VPY" -m pip install -q "torch==2.13.0"
EXTRAS=${NAPARI_GRAINS_EXTRAS:-pyqt5,formats,test,dev}
echo "[setup] installing napari-grains[$EXTRAS]"
# pip's warnings about this machine's unused local index folders are noise: filter them.
"$VPY" -m pip install -q -e ".[$EXTRAS]" 2>&1 | { grep -vE "^WARNING: Location .* is ignored" || true; }
[ "${PIPESTATUS[0]}" = 0 ] || { echo "[setup] pip install failed" >&2; exit 1; }
echo "[setup] done: $("$VPY" -c 'import napari_grains, torch; print("napari-grains", napari_grains.__version__, "torch", torch.__version__)')"
