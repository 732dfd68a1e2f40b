"""Hypothesis properties of what users type and send: ``--set`` overrides, model references, and
the tabular fast path against scikit-learn on random rows. Each property says what must hold for
every input, and that anything else fails with zero2one's one-line errors, never a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from zero2one.errors import ModelRefError, RecipeError, UserError
from zero2one.recipe import apply_overrides

FAST = settings(max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

key = st.text(st.characters(codec="utf-8", exclude_characters=".=\n\r"), min_size=1,
              max_size=12).filter(lambda k: k.strip() == k and k)
scalar = (st.integers(-10**9, 10**9) | st.booleans()
          | st.floats(allow_nan=False, allow_infinity=False, width=32)
          | st.text(st.characters(codec="utf-8", categories=("L", "N")), min_size=1,
                    max_size=12))
value = scalar | st.lists(scalar, max_size=4)


@FAST
@given(path=st.lists(key, min_size=1, max_size=4), new=value,
       recipe=st.dictionaries(key, scalar, max_size=4))
def test_an_override_sets_exactly_its_value(path: list[str], new: Any,
                                             recipe: dict[str, Any]) -> None:
    assume(path[0] not in recipe or len(path) == 1)  # a scalar is not a section
    written = yaml.safe_dump(new, default_flow_style=True).strip().removesuffix("...").strip()
    result = apply_overrides(recipe, [f"{'.'.join(path)}={written}"])
    node: Any = result
    for part in path:
        node = node[part]
    assert node == new
    rest = {k: v for k, v in result.items() if k != path[0]}
    assert rest == {k: v for k, v in recipe.items() if k != path[0]}  # nothing else moved


@FAST
@given(item=st.text(max_size=40))
def test_any_override_text_applies_or_is_a_recipe_error(item: str) -> None:
    recipe = {"task": "tabular-classification", "data": {"source": "sklearn:iris"}}
    try:
        result = apply_overrides(recipe, [item])
    except RecipeError as exc:
        assert "--set" in str(exc) and "\n" not in str(exc).strip()
    else:
        assert isinstance(result, dict)
    assert recipe == {"task": "tabular-classification", "data": {"source": "sklearn:iris"}}


@FAST
@given(section=st.sampled_from(["task", "data.source"]), rest=st.lists(key, min_size=1,
                                                                       max_size=3))
def test_a_value_is_not_a_section(section: str, rest: list[str]) -> None:
    recipe = {"task": "tabular-classification", "data": {"source": "sklearn:iris"}}
    with pytest.raises(RecipeError, match="not a section"):
        apply_overrides(recipe, [f"{section}.{'.'.join(rest)}=1"])


refs = (st.text(max_size=60)
        | st.builds(lambda a, b: f"models:/{a}{b}", st.text(max_size=20),
                    st.sampled_from(["", "/", "/1", "/latest", "@", "@champion", "/x/y", "@@"]))
        | st.builds(lambda a: f"runs:/{a}", st.text(max_size=40))
        | st.builds(lambda a: f"builtin:{a}", st.text(max_size=30))
        | st.sampled_from(["..", "/", "/etc/passwd", "~", ".", "models:/", "runs:/", "hf:",
                           "builtin:", "../../../../etc", "file:///etc/hosts"]))


@settings(max_examples=120, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ref=refs)
def test_any_reference_resolves_or_is_one_clear_error(ref: str, workspace: Path) -> None:
    """Nothing is registered in the workspace: every reference fails, always with a
    ModelRefError (or another UserError) and a one-line message, never anything else."""
    from zero2one.refs import resolve

    assume("\x00" not in ref)
    try:
        resolved = resolve(ref)
    except (ModelRefError, UserError) as exc:
        assert str(exc) and "Traceback" not in str(exc)
    else:  # only the built-in models and pretrained references resolve without a registry
        assert resolved.kind in ("builtin", "pretrained"), resolved


# ---- the tabular fast path ---------------------------------------------------------------------

number = st.none() | st.floats(-1e6, 1e6, allow_nan=False) | st.integers(-1000, 1000)
colour = st.none() | st.sampled_from(["red", "green", "blue", "purple", "", "RED", "日本"])
size = st.none() | st.sampled_from(["big", "small", "huge", "big "])


@pytest.fixture(scope="module")
def mixed_adapter(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A random forest over a number, a colour and a size (gaps in each), imputed, scaled and
    one-hot encoded."""
    from zero2one.api import load, train
    from zero2one.tasks.tabular.serving import TabularAdapter

    from .tasks.test_tabular import csv_recipe, mixed_frame

    work = tmp_path_factory.mktemp("mixed-properties")
    frame = mixed_frame(200)
    frame["size"] = np.where(frame["id"] % 2 == 0, "big", "small")
    frame.loc[3::11, "size"] = None
    frame.to_csv(work / "d.csv", index=False)
    train(csv_recipe(work / "d.csv", data={"source": str(work / "d.csv"), "target": "label",
                                           "drop": ["id"]},
                     model={"estimator": "random_forest", "params": {"random_state": 0}}),
          out=work / "m")
    adapter = TabularAdapter(load(work / "m"), max_rows=1000)
    assert adapter.fast is not None  # the fast path is what is being checked
    return adapter


@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(number, colour, size), min_size=1, max_size=40))
def test_the_fast_path_answers_as_scikit_learn(rows: list[tuple[Any, Any, Any]],
                                               mixed_adapter: Any) -> None:
    """The server's NumPy replay against scikit-learn on the rows as the library prepares them
    (``coerce``), row for row: a row's answer does not depend on the rows beside it."""
    from zero2one.tasks.tabular.columns import coerce

    model = mixed_adapter.model
    fast = mixed_adapter.predict([list(r) for r in rows])
    frame = coerce(pd.DataFrame([list(r) for r in rows], columns=mixed_adapter.names),
                   model.columns_)
    assert [p for p, _ in fast] == list(model.pipeline_.predict(frame))
    assert np.allclose([q for _, q in fast], model.pipeline_.predict_proba(frame))
    alone = mixed_adapter.predict([list(rows[-1])])  # the last row, in a batch of its own
    assert alone[0][0] == fast[-1][0] and np.allclose(alone[0][1], fast[-1][1])
