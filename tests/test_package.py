"""Packaging: the three folders install under the antidistill namespace and nowhere else."""
import importlib.metadata as md

import antidistill.eval
import antidistill.students
import antidistill.watermark


def test_no_generic_top_level_modules_installed():
    # the installed record (a source checkout's egg-info on sys.path lists the source tree instead)
    installed = [d for d in md.distributions(name="antidistill") if d.read_text("RECORD")]
    assert installed, "antidistill is not installed (pip install -e . or pip install .)"
    tops = {f.parts[0] for f in installed[0].files}
    assert not tops & {"watermark", "eval", "students", "watermark.py", "eval.py", "students.py"}, tops
    assert md.entry_points(group="console_scripts", name="antidistill")


def test_namespace_maps_the_three_folders():
    for module, folder in ((antidistill.watermark, "watermark"), (antidistill.students, "students"),
                           (antidistill.eval, "eval")):
        assert module.__name__.startswith("antidistill.")
        assert module.__file__.replace("\\", "/").split("/")[-2] == folder
