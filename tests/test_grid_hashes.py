"""Every run of every profile's grid keeps its config hash: a hash that moves orphans the
finished runs and records of that config. tests/data/grid_hashes.json is the list; a
deliberate change to a grid rewrites it (and says so in its commit), any other fails."""

import json
from pathlib import Path

import pytest

from ocdlib.grid.gather import grid_configs
from ocdlib.profiles import NOTEBOOK_PROFILES

HASHES = json.loads((Path(__file__).parent / "data" / "grid_hashes.json").read_text())


@pytest.mark.parametrize("profile", list(NOTEBOOK_PROFILES))
def test_every_run_of_the_grid_keeps_its_config_hash(profile):
    grid = grid_configs(NOTEBOOK_PROFILES[profile])
    now = sorted(f"{c.name}-{c.hash}-s{c.train.seed}" for _, c in grid)
    assert now == HASHES[profile], (
        f"{profile}: moved {sorted(set(HASHES[profile]) - set(now))[:5]}, "
        f"new {sorted(set(now) - set(HASHES[profile]))[:5]}"
    )
