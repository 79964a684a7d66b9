"""Speed of the kit, measured in one run: `python -m ocdlib bench`.

Sections: what each deployed model costs (`model_cost.py`), what a training
step of each method costs and where OCD's extra time goes (`training_cost.py`),
the data pipeline's images per second stage by stage (`data_pipeline.py`), and
COCOeval's time (`eval_cost.py`); `timing.py` holds the interleaved-rounds
convention, `run.py` the plans, `run_bench` and the perf.json / perf.md writer.
"""
