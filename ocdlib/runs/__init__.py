"""The runs a grid is made of: where a config's run lives and its finished result
(`cache`), and the records that outlive a run cache (`records`).

One run's folder (its files, its lock, reading it back) is the engine's
(`ocdlib.engine.run_dir`): the engine writes it wherever it is told.
"""
