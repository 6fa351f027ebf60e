from trackstream.schemas.experiment_ids import DEFAULT_EXPERIMENT_ID, candidate_experiment_ids, new_experiment_id

import pytest

from trackstream.errors import ResourceAlreadyExists


def test_candidates_are_distinct_integer_strings_stable_across_calls():
    ids = candidate_experiment_ids("resnet")
    assert ids == candidate_experiment_ids("resnet") and len(set(ids)) == len(ids)
    assert all(i.isdigit() and int(i) < 2 ** 62 for i in ids)
    assert set(ids).isdisjoint(candidate_experiment_ids("resnet2"))


def test_the_default_experiment_prefers_id_zero():
    assert candidate_experiment_ids("Default")[0] == DEFAULT_EXPERIMENT_ID


def test_a_new_experiment_takes_the_first_free_candidate():
    first, second, third = candidate_experiment_ids("a")[:3]
    assert new_experiment_id("a", set()) == first
    assert new_experiment_id("a", {first}) == second  # "a" was renamed: its id stays with the renamed one
    assert new_experiment_id("a", {first, second}) == third


def test_running_out_of_candidates_is_a_clear_error():
    with pytest.raises(ResourceAlreadyExists, match="could not allocate an id for experiment 'a'"):
        new_experiment_id("a", set(candidate_experiment_ids("a")))
