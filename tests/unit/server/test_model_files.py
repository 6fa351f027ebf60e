"""The files an MLmodel declares, which a finalize READY requires to be committed."""

import pytest

from trackstream.errors import InvalidInput
from trackstream.server.model_files import declared_files, missing_declared

SKLEARN_MLMODEL = """
artifact_path: model
flavors:
  python_function:
    env:
      conda: conda.yaml
      virtualenv: python_env.yaml
    loader_module: mlflow.sklearn
    model_path: model.pkl
    predict_fn: predict
    python_version: 3.11.7
  sklearn:
    code: null
    pickled_model: model.pkl
    serialization_format: cloudpickle
    sklearn_version: 1.9.1
mlflow_version: 3.17.2
model_id: m-0123
"""


def test_sklearn_mlmodel_declares_its_pickle_and_environment_files():
    assert declared_files(SKLEARN_MLMODEL) == ["model.pkl", "conda.yaml", "python_env.yaml"]


def test_a_declared_directory_needs_a_file_under_it():
    assert missing_declared(["data", "model.pkl"], {"data/weights.bin"}) == ["model.pkl"]
    assert missing_declared(["data"], {"database.txt"}) == ["data"]


def test_paths_outside_the_model_are_not_declared_files():
    text = "flavors:\n  x:\n    data: /etc/passwd\n    model_path: ../up\n    model_file: s3://b/k\n"
    assert declared_files(text) == []


def test_an_mlmodel_without_flavors_declares_nothing_more():
    assert declared_files("artifact_path: model\nmodel_id: m-1\n") == []


@pytest.mark.parametrize("text", ["flavors: [", "- a list\n", "flavors: [a, b]\n"])
def test_an_unreadable_mlmodel_is_a_clear_error(text):
    with pytest.raises(InvalidInput, match="MLmodel"):
        declared_files(text)
