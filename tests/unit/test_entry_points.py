"""`load_entry_point`: "module:function" from the Python path or a .py file, and one
clear line naming the field for every way it can be wrong."""

import pytest

from unlearn_core.errors import UserError
from unlearn_core.models.adapter import entry_point_source_hash, load_entry_point


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "user_models.py"
    path.write_text("import math\n\nclass Factory:\n    @staticmethod\n    def build():\n"
                    "        return 'built'\n\ndef build():\n    return 'plain'\n\nNUMBER = 3\n")
    return path


def test_loads_from_the_python_path():
    assert load_entry_point("math:sqrt")(16) == 4
    assert load_entry_point(" os.path:join ")("a", "b").endswith("b")


def test_loads_from_a_file_and_dotted_attribute(user_file):
    assert load_entry_point(f"{user_file}:build")() == "plain"
    assert load_entry_point(f"{user_file}:Factory.build")() == "built"
    # The same file twice is the same module, not a fresh copy.
    assert load_entry_point(f"{user_file}:build") is load_entry_point(f"{user_file}:build")


@pytest.mark.parametrize("text, message", [
    ("no_colon", "expected 'module:function'"),
    ("math:", "expected 'module:function'"),
    (":sqrt", "expected 'module:function'"),
    ("math:1bad", "expected 'module:function'"),
    (42, "expected 'module:function' (text), got int"),
    ("surely_not_a_module_xyz:build", "cannot import module 'surely_not_a_module_xyz'"),
    ("math:no_such_function", "'math' has no attribute 'no_such_function'"),
    ("math:pi", "is a float, not a function or class"),
    ("/nowhere/x.py:build", "no such Python file"),
])
def test_bad_entry_points_name_the_field(text, message):
    with pytest.raises(UserError, match="^model.entry_point: ") as info:
        load_entry_point(text, field="model.entry_point")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_module_that_raises_on_import_is_one_line(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('no GPU\\nhere')\n")
    with pytest.raises(UserError, match=r"importing .* failed: RuntimeError: no GPU here$"):
        load_entry_point(f"{broken}:build")
    syntax = tmp_path / "syntax.py"
    syntax.write_text("def build(:\n")
    with pytest.raises(UserError, match="SyntaxError"):
        load_entry_point(f"{syntax}:build")


def test_source_hash_follows_the_file(user_file):
    before = entry_point_source_hash(f"{user_file}:build")
    assert len(before) == 16
    user_file.write_text(user_file.read_text() + "\n# edited\n")
    assert entry_point_source_hash(f"{user_file}:build") != before
    assert entry_point_source_hash("math:sqrt") == ""  # a compiled module: no source to hash


def test_an_edited_file_is_loaded_anew(user_file):
    first = load_entry_point(f"{user_file}:build")
    user_file.write_text(user_file.read_text().replace("'plain'", "'edited'"))
    assert load_entry_point(f"{user_file}:build")() == "edited" and first() == "plain"
