"""Which experiment ``set_experiment(name)`` means, against a fake directory of what exists."""

import pytest

from trackstream.errors import InvalidInput
from trackstream.producer.experiments import resolve_experiment
from trackstream.schemas.experiment_ids import candidate_experiment_ids
from tests.unit.producer.test_client import FakeDirectory


def test_an_existing_experiment_keeps_its_id_even_after_a_rename():
    first = candidate_experiment_ids("old")[0]
    directory = FakeDirectory({first: ("new", "active")})  # "old" was renamed to "new"
    assert resolve_experiment("new", directory) == (first, False)


def test_a_name_freed_by_a_rename_gets_a_new_experiment_on_its_next_candidate():
    first, second = candidate_experiment_ids("old")[:2]
    directory = FakeDirectory({first: ("new", "active")})
    assert resolve_experiment("old", directory) == (second, True)


def test_an_unknown_name_gets_its_first_candidate():
    assert resolve_experiment("fresh", FakeDirectory()) == (candidate_experiment_ids("fresh")[0], True)


def test_a_deleted_experiment_is_refused_as_mlflow_refuses_it():
    directory = FakeDirectory({"42": ("gone", "deleted")})
    with pytest.raises(InvalidInput, match="Cannot set a deleted experiment 'gone'"):
        resolve_experiment("gone", directory)
