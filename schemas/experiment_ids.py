"""How an experiment gets its id: the one rule the SDK and the gateway both apply.

Ids are integer strings (MLflow clients expect them) derived from the name, so that processes
that cannot coordinate (training ranks writing straight to Kafka, several gateways) agree on
the id of a new experiment without a round trip through a central allocator:

1. An experiment that exists under the name keeps its id (ids never change; a rename keeps it).
2. A new experiment takes the first of :func:`candidate_experiment_ids` that no experiment holds.

Rule 2 is why a name reused after a rename gets a new id, as in MLflow: rename "a" to "b", and
"b" keeps the id "a" had; creating "a" again (``mlflow.set_experiment("a")``,
``ts.set_experiment("a")``) makes a new experiment on the next free candidate of "a".
"""

from __future__ import annotations

import hashlib
from typing import Container

from trackstream.errors import ResourceAlreadyExists

DEFAULT_EXPERIMENT_ID = "0"
DEFAULT_EXPERIMENT_NAME = "Default"
CANDIDATES = 8


def candidate_experiment_ids(name: str) -> list[str]:
    """The ids a new experiment called ``name`` may take, in order of preference."""
    ids = [DEFAULT_EXPERIMENT_ID] if name == DEFAULT_EXPERIMENT_NAME else []
    for attempt in range(CANDIDATES):
        seed = f"{name}\x00{attempt}" if attempt else name
        ids.append(str(int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big") >> 2))
    return ids


def new_experiment_id(name: str, taken: Container[str]) -> str:
    """Rule 2: the first candidate id of ``name`` that is not ``in taken`` (which may look ids up
    lazily, one membership test per candidate, stopping at the first free one)."""
    candidates = candidate_experiment_ids(name)
    for experiment_id in candidates:
        if experiment_id not in taken:
            return experiment_id
    raise ResourceAlreadyExists(f"could not allocate an id for experiment '{name}': all {len(candidates)} "
                                f"candidate ids are held by other experiments")
