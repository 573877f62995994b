"""Loaders of Telepathy entities and Turtle stories: UserRL's files, ours, and bad records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bao.errors import TaskDataError
from bao.gym_tasks import (
    load_telepathy_entities,
    load_turtle_stories,
    row_title,
    split_held_out,
)
from tests.conftest import REPO_ROOT, USERRL_DIR

TELEPATHY_DIR = USERRL_DIR / "telepathy_gym"
TURTLE_DIR = USERRL_DIR / "turtle_gym"
needs_userrl = pytest.mark.skipif(
    not TELEPATHY_DIR.is_dir(), reason="the UserRL data (../shared/data/userrl) is not here"
)
EXAMPLES = REPO_ROOT / "configs" / "data"

ENTITY = {
    "id": "e1",
    "title": "Piano",
    "description": "I am thinking of an instrument.",
    "goal": "Guess it.",
    "target_entity": "Piano - a keyboard instrument",
    "category": "musical_instrument",
}
STORY = {
    "new_title": "The Snowman",
    "new_surface": "Children built a snowman.",
    "new_bottom": "A purse was hidden in the snow.",
    "evaluation": [{"statement": "a purse", "score": 0.6}, {"statement": "snow", "score": 0.4}],
}


@needs_userrl
def test_userrl_entities_and_their_rows_load() -> None:
    entities = load_telepathy_entities(TELEPATHY_DIR / "entities_train.json")
    assert len(entities) == 360
    assert entities[0].id == "entity_001"
    assert entities[0].target_entity.startswith("Albert Einstein")
    rows = load_telepathy_entities(TELEPATHY_DIR / "train.parquet")
    assert len(rows) == 360
    assert {entity.id for entity in rows} == {entity.id for entity in entities}


@needs_userrl
def test_userrl_stories_and_their_rows_load() -> None:
    stories = load_turtle_stories(TURTLE_DIR / "stories_train.json")
    assert len(stories) == 423
    assert all(story.max_score == pytest.approx(1.0) for story in stories)
    assert all(1 <= len(story.rubric) <= 5 for story in stories)
    rows = load_turtle_stories(TURTLE_DIR / "train.parquet")
    assert len(rows) == 423
    assert rows[0].title == "The Online Meeting"


def test_the_shipped_examples_load() -> None:
    entities = load_telepathy_entities(EXAMPLES / "telepathy_entities.json")
    stories = load_turtle_stories(EXAMPLES / "turtle_stories.json")
    assert len(entities) >= 20
    assert len(stories) >= 8
    assert all(story.max_score == pytest.approx(1.0) for story in stories)


def test_records_round_trip_through_jsonl_and_list_form(tmp_path: Path) -> None:
    stories = load_turtle_stories(EXAMPLES / "turtle_stories.json")
    listed = tmp_path / "stories.json"
    listed.write_text(json.dumps([story.to_dict() for story in stories]))
    assert load_turtle_stories(listed) == stories
    lines = tmp_path / "stories.jsonl"
    lines.write_text("\n".join(json.dumps(story.to_dict()) for story in stories) + "\n")
    assert load_turtle_stories(lines) == stories
    entities = load_telepathy_entities(EXAMPLES / "telepathy_entities.json")
    lines = tmp_path / "entities.jsonl"
    lines.write_text("\n".join(json.dumps(entity.to_dict()) for entity in entities))
    assert load_telepathy_entities(lines) == entities


def _rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_parquet_rows_find_records_by_title_case_insensitively(tmp_path: Path) -> None:
    (tmp_path / "entities_train.json").write_text(json.dumps([ENTITY]))
    no_tool = {"tools_kwargs": {"interact_with_env": {"create_kwargs": {"title": None}}}}
    by_reward_model = {
        "reward_model": {"title": "PIANO", "ground_truth": ENTITY["target_entity"]},
        "extra_info": no_tool,
    }
    by_tool = {
        "reward_model": {"title": None, "ground_truth": None},
        "extra_info": {
            "tools_kwargs": {"interact_with_env": {"create_kwargs": {"title": "piano"}}}
        },
    }
    assert row_title(by_tool) == "piano"
    rows = _rows(tmp_path / "train.parquet", [by_reward_model, by_tool])
    assert [entity.id for entity in load_telepathy_entities(rows)] == ["e1", "e1"]


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ({"a": 1}, "expected a JSON list of records"),
        ([], "contains no records"),
        (["x"], "record 0: expected an object"),
        ([{**ENTITY, "title": ""}], "record 0: field 'title' must be a non-empty string"),
        ([{k: v for k, v in ENTITY.items() if k != "target_entity"}], "'target_entity'"),
        ([ENTITY, ENTITY], "id 'e1' is used twice"),
        ([ENTITY, {**ENTITY, "id": "e2", "title": "piano"}], "title 'piano' is used by 'e1'"),
    ],
)
def test_bad_entity_files_are_one_clear_line(tmp_path: Path, records: Any, message: str) -> None:
    path = tmp_path / "entities.json"
    path.write_text(json.dumps(records))
    with pytest.raises(TaskDataError, match=message) as caught:
        load_telepathy_entities(path)
    assert "\n" not in str(caught.value)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"evaluation": []}, "'evaluation' must be a non-empty list"),
        ({"evaluation": [{"statement": "x", "score": 0}]}, r"evaluation\[0\]: 'score' must be"),
        ({"evaluation": [{"statement": "x", "score": True}]}, "'score' must be a positive"),
        ({"evaluation": [{"statement": "", "score": 0.5}]}, "'statement' must be a non-empty"),
        (
            {"evaluation": [{"statement": "x", "score": 0.7}, {"statement": "y", "score": 0.6}]},
            "sum to 1.3, more than 1",
        ),
        ({"new_bottom": None}, "'new_bottom' must be a non-empty string"),
    ],
)
def test_bad_stories_are_one_clear_line(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    path = tmp_path / "stories.json"
    path.write_text(json.dumps({"7": {**STORY, **change}}))
    with pytest.raises(TaskDataError, match=message) as caught:
        load_turtle_stories(path)
    assert "story '7'" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_rows_that_disagree_with_their_records_are_refused(tmp_path: Path) -> None:
    (tmp_path / "stories_train.json").write_text(json.dumps({"7": STORY}))
    other = _rows(
        tmp_path / "train.parquet",
        [{"reward_model": {"title": "The Snowman", "surface": "Something else."}}],
    )
    with pytest.raises(TaskDataError, match=r"row 0: reward_model.surface disagrees"):
        load_turtle_stories(other)
    missing = _rows(tmp_path / "missing.parquet", [{"reward_model": {"title": "Nope"}}])
    with pytest.raises(TaskDataError, match="title 'Nope' is not in the records file"):
        load_turtle_stories(missing)
    untitled = _rows(tmp_path / "untitled.parquet", [{"reward_model": {"style": "rule"}}])
    with pytest.raises(TaskDataError, match="no title"):
        load_turtle_stories(untitled)


def test_a_parquet_file_needs_one_records_file_beside_it(tmp_path: Path) -> None:
    rows = _rows(tmp_path / "train.parquet", [{"reward_model": {"title": "Piano"}}])
    with pytest.raises(TaskDataError, match=r"found 0 entities\*.json"):
        load_telepathy_entities(rows)
    elsewhere = tmp_path / "data" / "mine.json"
    elsewhere.parent.mkdir()
    elsewhere.write_text(json.dumps([ENTITY]))
    assert load_telepathy_entities(rows, entities_path=elsewhere)[0].id == "e1"


def test_unknown_formats_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(TaskDataError, match="does not exist"):
        load_telepathy_entities(tmp_path / "none.json")
    (tmp_path / "x.csv").write_text("a")
    with pytest.raises(TaskDataError, match="unknown format"):
        load_turtle_stories(tmp_path / "x.csv")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(TaskDataError, match="not valid JSON at line 1"):
        load_turtle_stories(tmp_path / "bad.json")


def test_held_out_split_is_seeded_and_disjoint() -> None:
    entities = load_telepathy_entities(EXAMPLES / "telepathy_entities.json")
    train, held = split_held_out(entities, 6, seed=3)
    assert len(held) == 6
    assert len(train) == len(entities) - 6
    assert not {e.id for e in train} & {e.id for e in held}
    assert split_held_out(entities, 6, seed=3) == (train, held)
    assert split_held_out(entities, 6, seed=4) != (train, held)
    with pytest.raises(TaskDataError, match="cannot hold out"):
        split_held_out(entities, len(entities), seed=0)
