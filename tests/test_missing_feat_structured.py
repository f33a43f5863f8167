"""The precompute note after a listing's missing partners (layouts.missing_feat_note) comes from
which roles each problem lacks, as its message holds them (layouts.PartnerMessage), not from the
message's wording: a reworded message keeps its note, and a message whose text merely mentions
{phase}_feat/ gets none."""
import pickle

import pytest

from pix2pixhd.data.dataset import format_problems
from pix2pixhd.data.layouts import PartnerMessage, find_files, missing_feat_note


@pytest.mark.fault(cls="bad dataset", case="feature maps missing as partners, the listing's messages "
                   "reworded: the precompute note still follows the missing roles")
def test_the_precompute_note_follows_the_missing_roles_not_the_wording(tmp_path):
    root = tmp_path / "data"
    files = {"val_label": "ab", "val_img": "ab", "val_inst": "a", "val_feat": "b"}   # a lacks its feature map
    for sub, stems in files.items():
        (root / sub).mkdir(parents=True)
        for s in stems:
            (root / sub / f"{s}.png").write_bytes(b"")   # listed by name: not read
    lay = find_files(root, "val", "cityscapes", use_inst=True, use_feat=True)
    partners = {p[1]: p[2] for p in lay.problems if p[0] == "missing partner"}
    assert sorted(partners) == [str(root / "val_label" / f"{s}.png") for s in "ab"], lay.problems
    reworded = [("missing partner", path, PartnerMessage(f"sample {n}: a partner is not there", m.roles,
                                                         m.root, m.phase))
                for n, (path, m) in enumerate(partners.items())]
    note = (f"val_feat/ lacks the feature maps of these samples: write them with `python -m "
            f"pix2pixhd.features precompute --checkpoint RUN --dataroot {root} --phase val`")
    listing = format_problems(pickle.loads(pickle.dumps(reworded)), "val")   # as an error sent between processes
    assert note in listing, f"no precompute note for reworded messages of a missing feature map:\n{listing}"
    b = str(root / "val_label" / "b.png")
    inst = partners[b]   # b lacks its instance map only
    assert inst.roles == ("inst",), inst.roles
    told = missing_feat_note([("missing partner", b, PartnerMessage("val_label/b.png has no val_feat/b.*",
                                                                    inst.roles, inst.root, inst.phase))])
    assert told is None, f"a missing instance map whose message names val_feat/ got the note: {told}"
