"""gemsft.files writes every output under a temporary name and renames it into place when complete;
with gemsft.rule_script's SIGTERM handler a job stopped by its scheduler removes what it was writing.
Its one JSON-lines reader reads gzip, stops at a row limit and names a bad line."""

from __future__ import annotations

import gzip
import signal
import subprocess
import sys
import textwrap

import pytest

from gemsft import files


@pytest.mark.parametrize("directory", [False, True], ids=["file", "directory"])
def test_a_failed_write_leaves_the_previous_output_and_nothing_else(tmp_path, directory):
    dest = tmp_path / "out"
    with files.atomic_path(dest, directory=directory) as tmp:
        (tmp / "a.txt").write_text("first") if directory else tmp.write_text("first")
    with pytest.raises(RuntimeError, match="disk full"):
        with files.atomic_path(dest, directory=directory) as tmp:
            (tmp / "a.txt").write_text("second") if directory else tmp.write_text("second")
            raise RuntimeError("disk full")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (dest / "a.txt" if directory else dest).read_text() == "first"


def test_a_complete_write_replaces_the_output(tmp_path):
    dest = tmp_path / "rows.jsonl"
    files.write_jsonl(dest, [{"a": 1}])
    files.write_jsonl(dest, [{"a": 2}, {"a": "é"}])
    assert files.read_jsonl(dest) == [{"a": 2}, {"a": "é"}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.jsonl"]


def test_read_jsonl_reads_gzip_stops_at_the_limit_and_names_a_bad_line(tmp_path):
    path = tmp_path / "rows.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write('{"a": 1}\n\n{"a": "é"}\n{not json\n')
    assert files.read_jsonl(path, limit=2) == [{"a": 1}, {"a": "é"}]  # the blank line is no row
    assert files.read_jsonl(path, limit=0) == []
    with pytest.raises(ValueError, match=r"^data/rows.jsonl.gz:4: not valid JSON \("):
        files.read_jsonl(path, name="data/rows.jsonl.gz")


WRITER = textwrap.dedent("""
    import sys, time
    from types import SimpleNamespace
    from gemsft import files
    from gemsft.rule_script import start

    if sys.argv[2] == "entry":
        start(SimpleNamespace(log=[], threads=1))
    with files.atomic_path(sys.argv[1], directory=True) as tmp:
        (tmp / "part-0.jsonl").write_text("{}\\n")
        print("writing", flush=True)
        time.sleep(120)
""")


def stop_while_writing(tmp_path, sig, mode):
    dest = tmp_path / "results" / "samples"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(dest), mode], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(sig)
    proc.wait(timeout=60)
    return proc.returncode, dest


def test_sigterm_stops_a_rule_script_without_leaving_its_temporary_output(tmp_path):
    returncode, dest = stop_while_writing(tmp_path, signal.SIGTERM, "entry")
    assert returncode == 128 + signal.SIGTERM
    assert list(dest.parent.iterdir()) == []  # neither the output nor its temporary name


@pytest.mark.parametrize("sig, mode", [(signal.SIGTERM, "plain"), (signal.SIGKILL, "entry")],
                         ids=["sigterm_without_entry", "sigkill"])
def test_a_killed_writer_never_leaves_the_output_itself(tmp_path, sig, mode):
    """Without the handler, or under SIGKILL, nothing can clean up: the temporary sibling (a dot
    name Snakemake never reads) stays, the output does not appear."""
    returncode, dest = stop_while_writing(tmp_path, sig, mode)
    assert returncode == -sig
    assert not dest.exists()
    assert [p.name.startswith(".samples.") for p in dest.parent.iterdir()] == [True]
