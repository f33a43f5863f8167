"""synthesize.py --inst on a folder holding Cityscapes' gtFine files of one stem (instanceIds beside
the labelIds a user copied with them): the refusal says what to do with each file, as the data
module's scan and evaluate's pairing do (layouts.same_stem_fix), where it said "keep one image per
stem", which could leave the labelIds file as the instance map."""
import numpy as np
import pytest
from PIL import Image

from pix2pixhd.data.layouts import same_stem_fix
from pix2pixhd.errors import InputError
from tests.synthesis_runs import synth
from tests.test_synthesis_engine import save_run


@pytest.mark.fault(cls="bad dataset",
                   case="synthesize.py --inst folder holding a stem's gtFine instanceIds and labelIds")
def test_an_inst_folder_of_gtfine_files_gets_the_per_file_advice(tmp_path):
    run = tmp_path / "run"
    save_run(run, label_nc=5)   # instance maps read (no_instance off)
    label, inst = tmp_path / "label", tmp_path / "inst"
    label.mkdir(), inst.mkdir()
    ids = np.zeros((8, 8), np.uint8)
    Image.fromarray(ids).save(label / "a_gtFine_labelIds.png")
    Image.fromarray(ids).save(inst / "a_gtFine_labelIds.png")
    Image.fromarray(ids.astype(np.uint16) + 1000).save(inst / "a_gtFine_instanceIds.png")
    with pytest.raises(InputError) as e:
        synth(run, label, tmp_path / "out", "--inst", inst)
    err = str(e.value)
    fix = same_stem_fix([inst / "a_gtFine_labelIds.png", inst / "a_gtFine_instanceIds.png"], "inst")
    assert fix and fix in err, err
    assert "keep one image per stem" not in err, err
