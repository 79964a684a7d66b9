"""The experiment grid: its rows (`row`, `rows`), the claims made about them (`claims`)
and their judging (`judge`).

Importing this package loads no torch: the runs that fill the rows are
`ocdlib.grid.gather`'s, and the TCD probe of notebook 07 is `ocdlib.grid.tcd_probe`'s.
"""
