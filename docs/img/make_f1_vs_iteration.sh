#!/bin/sh
# Makes docs/img/f1_vs_iteration_paper.{csv,png}: F1 vs Net2 iteration of the paper model
# (paper mode) on the first 2 images of every benchmark set. About 6 minutes on 2 busy cores.
# Run from the repository root: sh docs/img/make_f1_vs_iteration.sh
# To redraw the PNG from the CSV only:
#   .venv/bin/python benchmarks/bench_iterations.py --from-csv docs/img/f1_vs_iteration_paper.csv \
#       --plot docs/img/f1_vs_iteration_paper.png --model paper --mode paper --limit 2
exec .venv/bin/python benchmarks/bench_iterations.py --model paper --max-iterations 50 \
    --mode paper --limit 2 \
    --csv docs/img/f1_vs_iteration_paper.csv --plot docs/img/f1_vs_iteration_paper.png
