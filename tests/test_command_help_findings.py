"""What a walkthrough of the command lines found: import_reference blaming opt.txt's options on a
--model no NVIDIA folder can be imported as, and a missing folder told as "it holds none";
synthesize.py's help for --cluster and --phase saying less than they do, and --validate accepted
and ignored with --input; features encode's --n_clusters 0 unexplained; evaluate's segmenter
options accepted and ignored without --labels."""
import pytest

from pix2pixhd import evaluate
from pix2pixhd.cli import synthesize_main, synthesize_parser
from pix2pixhd.errors import ConfigError, MissingInputError, UserError
from pix2pixhd.features import build_parser as features_parser
from pix2pixhd.import_reference import import_reference_run, main as import_main
from tests.test_import_findings import _nv


def _help(parser, flag: str) -> str:
    """The help text of ``flag`` in ``parser`` (or its encode sub-command), on one line."""
    action = next(a for a in parser._actions if flag in a.option_strings)
    return " ".join(action.help.split())


# ---- import_reference ----------------------------------------------------------------------------
@pytest.mark.fault(cls="command-line errors",
                   case="import_reference NVIDIA_RUN --model {model}: refused first, naming --model and the fix, "
                        "nothing written")
@pytest.mark.parametrize("model", ["cyclegan", "pix2pix"])
def test_another_model_is_refused_before_opt_txts_options(tmp_path, model):
    """It said "--num_D 2: --model cyclegan does not use it ... drop --num_D (num_D 2 is opt.txt's:
    pass --num_D to import_reference to give another)": the user never gave --num_D, and no
    --num_D makes pix2pixHD's networks another model's."""
    src = _nv(tmp_path / "nvidia" / "run")
    out = tmp_path / "ck"
    with pytest.raises(ConfigError) as e:
        import_main([str(src), "--checkpoints_dir", str(out), "--name", "imp6", "--model", model])
    msg = str(e.value)
    assert msg == (f"--model {model}: {src} is a run of NVIDIA's pix2pixHD, which imports as --model pix2pixhd "
                   "only (its networks are pix2pixHD's): drop --model"), msg
    assert not out.exists()


def test_nvidias_spelling_of_pix2pixhd_is_still_imported(tmp_path, capsys):
    src = _nv(tmp_path / "nvidia" / "run")
    import_reference_run(src, ["--checkpoints_dir", str(tmp_path / "ck"), "--model", "pix2pixHD"], dry_run=True)
    assert "dry run: would import" in capsys.readouterr().out


@pytest.mark.fault(cls="command-line errors",
                   case="import_reference on a folder that does not exist: says so, not 'it holds none'")
def test_a_folder_that_does_not_exist_is_said_to_not_exist(tmp_path):
    with pytest.raises(MissingInputError) as e:
        import_reference_run(tmp_path / "nope", [])
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path / 'nope'} does not exist: "), msg
    assert "latest_net_G.pth not found" not in msg and "holds none" not in msg, msg
    assert "\n" not in msg
    (tmp_path / "file").write_text("x")
    with pytest.raises(MissingInputError, match=r"file is not a folder: "):
        import_reference_run(tmp_path / "file", [])


# ---- synthesize.py ----------------------------------------------------------------------------
def test_cluster_help_says_k_is_taken_modulo_each_classs_count():
    """docs/features.md and check_cluster_choice say so; --help said "K for every class"."""
    text = _help(synthesize_parser(), "--cluster")
    assert "modulo each class's count of clusters" in text, text


def test_phase_help_says_what_it_names_with_input():
    """--input lab --phase train wrote train_img/: the help spoke of --dataroot only."""
    text = _help(synthesize_parser(), "--phase")
    assert "the split to read" in text and "with --input: only that" in text, text
    assert "split written in --out unless --out_phase" in text, text


@pytest.mark.fault(cls="command-line errors",
                   case="synthesize --input DIR {id}: refused in one line naming --dataroot, before the "
                        "generator is loaded")
@pytest.mark.parametrize("how", [["--validate", "full"], ["--validate=off"], ["--validate", "headers"]],
                         ids=" ".join)
def test_validate_with_input_is_refused(tmp_path, how):
    """It was accepted and changed nothing: an --input folder is not validated as a dataset. The
    default's value given explicitly is refused too (the parser's default stays SynthesisJob's)."""
    with pytest.raises(ConfigError) as e:
        synthesize_main(["--checkpoint", str(tmp_path / "run"), "--input", str(tmp_path / "maps"),
                         "--out", str(tmp_path / "out"), *how])
    value = how[-1].split("=")[-1]
    assert str(e.value) == (f"--validate {value} goes with --dataroot: an --input folder is not validated as a "
                            "dataset (each map is checked as it is read, and skipped if bad): drop --validate")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("source", [["--input", "maps"], ["--dataroot", "data", "--validate", "full"]])
def test_validate_is_not_refused_where_it_is_not_given_or_reads_a_dataroot(tmp_path, source):
    """The run folder is read next (and is missing here): that error, not --validate's."""
    argv = ["--checkpoint", str(tmp_path / "run"), "--out", str(tmp_path / "out"), "--device", "cpu",
            *[str(tmp_path / s) if s in ("maps", "data") else s for s in source]]
    with pytest.raises(UserError) as e:
        synthesize_main(argv)
    assert "--validate" not in str(e.value), str(e.value)
    assert str(tmp_path / "run") in str(e.value), str(e.value)


# ---- features encode ------------------------------------------------------------------------------
def test_n_clusters_help_says_what_0_means():
    encode = next(a for a in features_parser()._actions if a.dest == "cmd").choices["encode"]
    text = _help(encode, "--n_clusters")
    assert "0: the run's --n_clusters" in text, text
    assert "(default: 0)" in " ".join(encode.format_help().split())


# ---- evaluate -------------------------------------------------------------------------------------
@pytest.mark.fault(cls="command-line errors",
                   case="evaluate {id} without --labels: refused in one line naming --labels, before any "
                        "image is read")
@pytest.mark.parametrize("given", [["--seg_steps", "50"], ["--seg_width", "64", "--seg_channels", "8"],
                                   ["--seg_batch", "2"]], ids=" ".join)
def test_segmenter_options_without_labels_are_refused(tmp_path, given):
    """They were accepted and read by nothing (no segmentation score without --labels)."""
    with pytest.raises(ConfigError) as e:
        evaluate.main(["--fake", str(tmp_path / "f"), "--real", str(tmp_path / "r"), *given])
    msg = str(e.value)
    pairs = [f"{given[i]} {given[i + 1]}" for i in range(0, len(given), 2)]
    assert msg.startswith(", ".join(pairs) + ": segmenter settings, but no segmentation score"), msg
    assert "--labels" in msg and msg.endswith("drop " + ", ".join(given[0::2])), msg
    assert "\n" not in msg


def test_without_segmenter_options_the_images_are_read(tmp_path):
    """The defaults (none given) pass the check: the next error is the missing --fake folder."""
    with pytest.raises(UserError) as e:
        evaluate.main(["--fake", str(tmp_path / "f"), "--real", str(tmp_path / "r")])
    assert "segmenter settings" not in str(e.value) and "--fake" in str(e.value), str(e.value)
