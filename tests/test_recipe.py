from pathlib import Path

import pytest

from zero2one.catalog import load_recipe, schema, task_names, validate
from zero2one.errors import RecipeError
from zero2one.recipe import apply_overrides, flatten, read_yaml

from .conftest import REPO, iris_recipe


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def test_shipped_recipe_validates_and_overrides_apply() -> None:
    config = load_recipe(REPO / "recipes/iris-svc.yaml", ["search.cv=3", "data.test_size=0.25"])
    assert config.search.cv == 3
    assert config.data.test_size == 0.25
    assert config.search.space["kernel"] == ["linear", "rbf", "poly"]
    assert config.register_as == "iris-svc"


def test_override_parses_yaml_values_and_creates_sections() -> None:
    raw = apply_overrides({"a": {"b": 1}}, ["a.b=[1, 2]", "c.d=true", "e=text", "f="])
    assert raw == {"a": {"b": [1, 2]}, "c": {"d": True}, "e": "text", "f": None}


def test_override_does_not_mutate_input() -> None:
    raw = {"a": {"b": 1}}
    apply_overrides(raw, ["a.b=2"])
    assert raw == {"a": {"b": 1}}


@pytest.mark.parametrize("bad", ["novalue", "=3", "a..b=1"])
def test_malformed_override(bad: str) -> None:
    with pytest.raises(RecipeError, match="--set"):
        apply_overrides({"a": 1}, [bad])


def test_override_into_a_scalar_is_an_error() -> None:
    with pytest.raises(RecipeError, match="a is a int, not a section"):
        apply_overrides({"a": 1}, ["a.b=2"])


def test_malformed_yaml_names_line(tmp_path: Path) -> None:
    path = write(tmp_path, "task: tabular-classification\nname: [unclosed\n")
    with pytest.raises(RecipeError, match=r"malformed YAML at line \d+"):
        read_yaml(path)


def test_missing_recipe_file(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="recipe file not found"):
        load_recipe(tmp_path / "nope.yaml")


def test_recipe_must_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="must be a YAML mapping"):
        read_yaml(write(tmp_path, "- a\n- b\n"))


def test_unknown_task_lists_known_ones() -> None:
    with pytest.raises(RecipeError, match="unknown task 'tabular-clasification'.*tabular-"):
        validate({"task": "tabular-clasification", "name": "x"})


def test_missing_task() -> None:
    with pytest.raises(RecipeError, match="missing 'task'"):
        validate({"name": "x"})


def test_unknown_field_names_path_and_allowed_fields() -> None:
    raw = iris_recipe()
    raw["search"]["folds"] = 3
    with pytest.raises(RecipeError, match=r"search\.folds: unknown field; allowed: method, space"):
        validate(raw)


def test_bad_enum_value_names_allowed_values() -> None:
    raw = iris_recipe()
    raw["search"]["method"] = "genetic"
    with pytest.raises(RecipeError, match=r"search\.method: Input should be 'grid', 'random'.*"
                                          r"\(got 'genetic'\)"):
        validate(raw)


def test_bad_number_names_bounds() -> None:
    raw = iris_recipe()
    raw["data"]["test_size"] = 1.5
    with pytest.raises(RecipeError, match=r"data\.test_size: Input should be less than 1"):
        validate(raw)


def test_grid_refuses_ranges() -> None:
    raw = iris_recipe()
    raw["search"]["space"]["C"] = {"low": 0.1, "high": 10, "log": True}
    with pytest.raises(RecipeError, match="grid search needs lists of values, but C is a range"):
        validate(raw)


def test_range_bounds_checked() -> None:
    raw = iris_recipe()
    raw["search"] = {"method": "random", "space": {"C": {"low": 0, "high": 10, "log": True}}}
    with pytest.raises(RecipeError, match="a log range needs low > 0"):
        validate(raw)


def test_search_needs_a_space() -> None:
    raw = iris_recipe()
    raw["search"] = {"method": "grid"}
    with pytest.raises(RecipeError, match="needs a non-empty space"):
        validate(raw)


@pytest.mark.parametrize(
    ("estimator", "message"),
    [
        ("svm", "unknown estimator 'svm'; use a short name"),
        ("sklearn.svm.SVQ", "has no class 'SVQ'"),
        ("no_such_module.Thing", "cannot import 'no_such_module'"),
        ("pathlib.Path", "not a scikit-learn estimator"),
    ],
)
def test_bad_estimator(estimator: str, message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        validate(iris_recipe(model={"estimator": estimator}))


def test_estimator_by_import_path() -> None:
    config = validate(iris_recipe(model={"estimator": "sklearn.svm.SVC"}))
    assert config.model.estimator == "sklearn.svm.SVC"


def test_unknown_estimator_parameter() -> None:
    raw = iris_recipe()
    raw["search"]["space"]["Cx"] = [1]
    with pytest.raises(RecipeError, match="SVC has no parameter 'Cx'; known: C, "):
        validate(raw)


def test_unknown_scorer() -> None:
    raw = iris_recipe()
    raw["search"]["scoring"] = "acuracy"
    with pytest.raises(RecipeError, match="unknown scorer 'acuracy'"):
        validate(raw)


def test_bad_name_pattern() -> None:
    with pytest.raises(RecipeError, match="name: String should match pattern"):
        validate(iris_recipe(name="has space"))


def test_schema_export_has_fields_and_descriptions() -> None:
    result = schema("tabular-classification")
    assert {"task", "name", "data", "model", "search"} <= set(result["properties"])
    assert "description" in result["$defs"]["SearchConfig"]["properties"]["cv"]
    with pytest.raises(RecipeError):
        schema("nope")


def test_flatten() -> None:
    assert flatten({"a": {"b": 1, "c": [1, 2]}, "d": None, "e": {}}) == {
        "a.b": "1", "a.c": "[1, 2]", "d": "None", "e": "{}"}


def test_every_shipped_recipe_validates() -> None:
    recipes = sorted((REPO / "recipes").glob("*.yaml"))
    assert recipes
    for path in recipes:
        config = load_recipe(path)
        assert config.task in task_names()
