"""What the notebooks write under reports/: tables (`tables`), figures (`figures`, drawn
with `viz`), a notebook's output folder (`notebook`), provenance (`provenance`) and the
README's results block (`readme`). Each is a function of run records.
"""
