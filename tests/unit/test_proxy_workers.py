"""Worker processes: each owns its journal and spool directory; a lowered worker count leaves no
events behind; budgets are shared by every process."""

from pathlib import Path

from services.proxy.settings import ProxySettings, proxy_settings_from_env
from services.proxy.transport.workers import adopt_orphans


def test_worker_zero_keeps_the_single_process_directory_and_the_others_get_their_own(tmp_path):
    """Worker 0 spools in the spool directory itself; workers 1 and 2 in worker-1 and worker-2 inside it."""
    settings = [ProxySettings(spool_dir=tmp_path, workers=3, worker=i) for i in range(3)]
    assert [s.spool_path for s in settings] == [tmp_path, tmp_path / "worker-1", tmp_path / "worker-2"]


def test_every_worker_of_every_replica_holds_a_share_of_a_budget():
    """Two replicas of three workers each: a budget is shared among six processes."""
    assert ProxySettings(replicas=2, workers=3).budget_processes == 6


def test_workers_come_from_the_environment(tmp_path):
    """TALLY_PROXY_WORKERS and TALLY_PROXY_WORKER set the count, this worker's number and so its spool path."""
    env = {"TALLY_PROXY_WORKERS": "4", "TALLY_PROXY_WORKER": "2", "TALLY_SPOOL_DIR": str(tmp_path)}
    settings = proxy_settings_from_env(env)
    assert (settings.workers, settings.worker, settings.spool_path) == (4, 2, tmp_path / "worker-2")


def test_files_of_workers_beyond_the_count_move_to_worker_zero(tmp_path):
    """With the count lowered, a gone worker's journal and spool files move to worker 0 (spools as .draining); a live worker's stay."""
    live, gone = tmp_path / "worker-1", tmp_path / "worker-2"
    for directory in (live, gone):
        directory.mkdir()
        (directory / "journal-1-0.jsonl").write_bytes(b'{"n":1}\n')
        (directory / "spool.jsonl").write_bytes(b'{"n":2}\n')
    (gone / "spool-5.draining").write_bytes(b'{"n":3}\n')

    assert adopt_orphans(tmp_path, workers=2) == 3

    assert not gone.exists()
    assert sorted(p.name for p in live.iterdir()) == ["journal-1-0.jsonl", "spool.jsonl"]  # a live worker's own
    adopted = sorted(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert adopted == [b'{"n":1}\n', b'{"n":2}\n', b'{"n":3}\n']
    assert {p.suffix for p in tmp_path.iterdir() if p.is_file() and not p.name.startswith("journal-")} == {".draining"}


def test_nothing_to_adopt_changes_nothing(tmp_path):
    """With no worker beyond the count, nothing is adopted and a live worker's directory stays."""
    (tmp_path / "worker-1").mkdir()
    assert adopt_orphans(tmp_path, workers=2) == 0
    assert Path(tmp_path / "worker-1").is_dir()
