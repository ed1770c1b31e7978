import sys

from napari_grains.cli import main

sys.exit(main())
