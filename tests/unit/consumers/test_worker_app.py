from pathlib import Path

from trackstream.config import Settings
from trackstream.consumers.worker import build_app


def test_worker_keeps_faust_data_under_trackstream_home_not_the_working_directory(tmp_path, monkeypatch):
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    settings = Settings(home=tmp_path / "home", consumer_group="materializer-unit")
    app = build_app(settings, service=None)  # the service is only used once the agent runs
    assert Path(app.conf.datadir).resolve().is_relative_to((tmp_path / "home").resolve())
    assert list(workdir.iterdir()) == []
