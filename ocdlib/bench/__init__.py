"""Speed of the kit, measured in one run: `python -m ocdlib bench`.

Sections: what each deployed model costs (`model_cost.py`), what a training
step of each method costs and where OCD's extra time goes (`training_cost.py`),
the data pipeline's images per second stage by stage (`data_pipeline.py`), and
COCOeval's time (`eval_cost.py`); `timing.py` holds the interleaved-rounds
convention, `run.py` the plans, `run_bench` and the perf.json / perf.md writer.

One home per concept: the measuring code lives here, in the package, where
`python -m ocdlib bench` and the tests reach it; benchmarks/ holds only standalone
scripts (a GPU's throughput, the CPU's training levers, SynthPose's rendering, a
reproduction's wall time), which import what they share from here.
"""
