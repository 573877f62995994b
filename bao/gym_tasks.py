"""Tasks of the LLM-user gyms: Telepathy entities and Turtle stories, and their loaders.

* A :class:`TelepathyEntity` is a hidden thing to guess: what the agent is told (its
  ``description``: "I am thinking of a famous person...") and what only the simulated user and
  the judge see (``target_entity``: the entity with a few identifying details).
* A :class:`TurtleStory` is a lateral-thinking puzzle: the ``surface`` the agent is told, the
  hidden ``bottom`` (what really happened) and a weighted ``rubric`` of statements a good
  answer story must make; the judge scores each statement 0, 0.5 or 1.

The loaders read UserRL's files (``entities_*.json``: a list of records; ``stories_*.json``: an
object of id -> record with ``new_title``, ``new_surface``, ``new_bottom`` and ``evaluation``),
JSON Lines with the same records, and UserRL's verl parquet rows, which name an entity or a
story by its title (case-insensitive, as UserRL looks them up) and are joined with the records
file beside them. Every record is checked, and a bad one is reported with the file, the record
and the field.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

from bao.errors import TaskDataError
from bao.tasks import read_json, read_jsonl_records, read_parquet_rows

RUBRIC_SCORES: Final = (0.0, 0.5, 1.0)
"""What the judge may give one rubric statement: missing, partly made, made."""
_WEIGHT_TOLERANCE: Final = 1e-6


class _Titled(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def title(self) -> str: ...


Record = TypeVar("Record", bound=_Titled)


@dataclass(frozen=True)
class TelepathyEntity:
    """One Telepathy-Gym task.

    Attributes:
        id: unique name, e.g. ``entity_001``.
        title: the entity's name (UserRL's rows refer to it), e.g. ``Piano``.
        description: the opening the agent sees ("I am thinking of a musical instrument...").
        goal: the task in one line ("Guess the musical instrument I am thinking of.").
        target_entity: the entity and identifying details: what the user and judge know.
        category: e.g. ``musical_instrument``.
    """

    id: str
    title: str
    description: str
    goal: str
    target_entity: str
    category: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The UserRL record form."""
        return {
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "goal": self.goal,
            "target_entity": self.target_entity,
            "category": self.category,
        }


@dataclass(frozen=True)
class RubricItem:
    """One statement a good Turtle answer makes, and its share of the story's score."""

    statement: str
    weight: float


@dataclass(frozen=True)
class TurtleStory:
    """One Turtle-Gym task.

    Attributes:
        id: unique name (UserRL's stories are keyed ``"5"``, ``"17"``...).
        title: the puzzle's title (UserRL's rows refer to it).
        surface: the puzzle the agent is told.
        bottom: the hidden story (what the user and judge know).
        rubric: what an answer must say; weights are positive and sum to at most 1, so a
            story's score is in [0, 1] (UserRL's weights sum to exactly 1).
    """

    id: str
    title: str
    surface: str
    bottom: str
    rubric: tuple[RubricItem, ...]

    @property
    def max_score(self) -> float:
        return math.fsum(item.weight for item in self.rubric)

    def to_dict(self) -> dict[str, Any]:
        """A list-style record (``id``, ``title``, ``surface``, ``bottom``, ``evaluation``)."""
        return {
            "id": self.id,
            "title": self.title,
            "surface": self.surface,
            "bottom": self.bottom,
            "evaluation": [
                {"statement": item.statement, "score": item.weight} for item in self.rubric
            ],
        }


# ------------------------------------------------------------------------- one record


def _text(record: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> str:
    value = record.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise TaskDataError(
            f"{where}: field {key!r} must be a non-empty string",
            value=value,
            fix=f"give every record a {key!r}",
        )
    return value.strip()


def entity_from_record(record: object, *, where: str = "record") -> TelepathyEntity:
    """A :class:`TelepathyEntity` from a UserRL entity record, checked field by field."""
    if not isinstance(record, Mapping):
        raise TaskDataError(
            f"{where}: expected an object, found {type(record).__name__}",
            fix="each entity is {id, title, description, goal, target_entity, category}",
        )
    return TelepathyEntity(
        id=_text(record, "id", where),
        title=_text(record, "title", where),
        description=_text(record, "description", where),
        goal=_text(record, "goal", where, required=False),
        target_entity=_text(record, "target_entity", where),
        category=_text(record, "category", where, required=False),
    )


def story_from_record(
    record: object, *, where: str = "record", story_id: str | None = None
) -> TurtleStory:
    """A :class:`TurtleStory` from a UserRL story record (``new_title``, ``new_surface``,
    ``new_bottom``, ``evaluation``; the id is its key) or a list-style one (``id``, ``title``,
    ``surface``, ``bottom``, ``evaluation``)."""
    if not isinstance(record, Mapping):
        raise TaskDataError(
            f"{where}: expected an object, found {type(record).__name__}",
            fix="each story has a title, surface, bottom and evaluation",
        )
    upstream = "new_title" in record  # UserRL's refined-story form
    name = "new_{}" if upstream else "{}"
    identifier = story_id if story_id is not None else _text(record, "id", where)
    rubric = _rubric(record.get("evaluation"), where)
    return TurtleStory(
        id=identifier,
        title=_text(record, name.format("title"), where),
        surface=_text(record, name.format("surface"), where),
        bottom=_text(record, name.format("bottom"), where),
        rubric=rubric,
    )


def _rubric(value: object, where: str) -> tuple[RubricItem, ...]:
    fix = "evaluation is a list of {statement, score} with positive scores summing to at most 1"
    if not isinstance(value, list) or not value:
        raise TaskDataError(f"{where}: field 'evaluation' must be a non-empty list", fix=fix)
    items: list[RubricItem] = []
    for number, item in enumerate(value):
        at = f"{where}: evaluation[{number}]"
        if not isinstance(item, Mapping):
            raise TaskDataError(f"{at}: expected an object", value=item, fix=fix)
        weight = item.get("score")
        if (
            isinstance(weight, bool)
            or not isinstance(weight, int | float)
            or not math.isfinite(weight)
            or weight <= 0
        ):
            raise TaskDataError(f"{at}: 'score' must be a positive number", value=weight, fix=fix)
        items.append(RubricItem(statement=_text(item, "statement", at), weight=float(weight)))
    total = math.fsum(item.weight for item in items)
    if total > 1 + _WEIGHT_TOLERANCE:
        raise TaskDataError(
            f"{where}: the evaluation scores sum to {total:g}, more than 1", fix=fix
        )
    return tuple(items)


# --------------------------------------------------------------------------- loading


def load_telepathy_entities(
    path: str | Path, entities_path: str | Path | None = None
) -> list[TelepathyEntity]:
    """Entities from a UserRL ``entities_*.json`` (a list), a ``.jsonl`` file, or UserRL
    parquet rows joined by title with ``entities_path`` (default: the single
    ``entities*.json`` beside the parquet file).

    Raises:
        TaskDataError: naming the file, the record and the field.
    """
    source = _existing(path)
    if source.suffix.lower() == ".parquet":
        entities = load_telepathy_entities(_beside(source, entities_path, "entities"))
        return _join_rows(source, entities, _telepathy_row_check)
    return _unique(
        source,
        [entity_from_record(record, where=where) for where, record in _records(source)],
    )


def load_turtle_stories(
    path: str | Path, stories_path: str | Path | None = None
) -> list[TurtleStory]:
    """Stories from a UserRL ``stories_*.json`` (an object of id -> record), a JSON list or
    ``.jsonl`` file of records with ids, or UserRL parquet rows joined by title with
    ``stories_path`` (default: the single ``stories*.json`` beside the parquet file).

    Raises:
        TaskDataError: naming the file, the record and the field.
    """
    source = _existing(path)
    if source.suffix.lower() == ".parquet":
        records = load_turtle_stories(_beside(source, stories_path, "stories"))
        return _join_rows(source, records, _turtle_row_check)
    if source.suffix.lower() == ".json":
        data = read_json(source)
        if isinstance(data, Mapping):  # UserRL's form: keyed by id
            stories = [
                story_from_record(record, where=f"{source}: story {key!r}", story_id=str(key))
                for key, record in data.items()
            ]
            return _unique(source, stories)
    stories = [story_from_record(record, where=where) for where, record in _records(source)]
    return _unique(source, stories)


def load_user_gym_tasks(
    gym: str, path: str | Path, records_path: str | Path | None = None
) -> list[TelepathyEntity] | list[TurtleStory]:
    """The tasks of ``gym`` (``telepathy_gym`` or ``turtle_gym``) in ``path``."""
    if gym == "telepathy_gym":
        return load_telepathy_entities(path, records_path)
    if gym == "turtle_gym":
        return load_turtle_stories(path, records_path)
    raise ValueError(f"{gym!r} is not a gym with a simulated user")


def _existing(path: str | Path) -> Path:
    source = Path(path)
    if not source.is_file():
        raise TaskDataError(
            f"task file {str(source)!r} does not exist", fix="check the path (relative to the cwd)"
        )
    if source.suffix.lower() not in (".json", ".jsonl", ".parquet"):
        raise TaskDataError(
            f"task file {str(source)!r} has an unknown format",
            value=source.suffix,
            fix="use a .json file, a .jsonl file or a UserRL .parquet file",
        )
    return source


def _records(source: Path) -> list[tuple[str, Any]]:
    """``(where, record)`` pairs of a JSON list or a JSON Lines file."""
    if source.suffix.lower() == ".json":
        data = read_json(source)
        if not isinstance(data, list):
            raise TaskDataError(
                f"{source}: expected a JSON list of records, found {type(data).__name__}",
                fix="write the records as a JSON list",
            )
        pairs = [(f"record {index}", record) for index, record in enumerate(data)]
    else:
        pairs = read_jsonl_records(source)
    if not pairs:
        raise TaskDataError(f"{source}: contains no records", fix="add at least one record")
    return [(f"{source}: {where}", record) for where, record in pairs]


def _unique(source: Path, records: list[Record]) -> list[Record]:
    if not records:
        raise TaskDataError(f"{source}: contains no records", fix="add at least one record")
    ids: set[str] = set()
    titles: dict[str, str] = {}
    for record in records:
        if record.id in ids:
            raise TaskDataError(
                f"{source}: id {record.id!r} is used twice", fix="give every record its own id"
            )
        ids.add(record.id)
        title = record.title.casefold()
        if title in titles:
            raise TaskDataError(
                f"{source}: title {record.title!r} is used by {titles[title]!r} and {record.id!r}",
                fix="titles name tasks in verl rows; make them unique",
            )
        titles[title] = record.id
    return records


def _beside(source: Path, given: str | Path | None, stem: str) -> Path:
    if given is not None:
        return Path(given)
    candidates = sorted(source.parent.glob(f"{stem}*.json"))
    if len(candidates) != 1:
        raise TaskDataError(
            f"{source}: parquet rows name tasks by title; found {len(candidates)} "
            f"{stem}*.json files beside it",
            fix=f"pass the {stem} file explicitly (tasks.records_path)",
        )
    return candidates[0]


def row_title(row: Mapping[str, Any]) -> str | None:
    """The title a UserRL/verl row names: ``reward_model.title``, else the tool's
    ``extra_info.tools_kwargs.interact_with_env.create_kwargs.title``."""
    reward_model = row.get("reward_model")
    if isinstance(reward_model, Mapping) and reward_model.get("title") not in (None, ""):
        return str(reward_model["title"])
    try:
        title = row["extra_info"]["tools_kwargs"]["interact_with_env"]["create_kwargs"]["title"]
    except (KeyError, TypeError):
        return None
    return None if title in (None, "") else str(title)


def by_title(records: Iterable[Record]) -> dict[str, Record]:
    """Records by case-folded title: how rows find them."""
    return {record.title.casefold(): record for record in records}


def _join_rows(
    source: Path,
    records: Sequence[Record],
    check: Callable[[Mapping[str, Any], Any, str], None],
) -> list[Record]:
    rows = read_parquet_rows(source)
    titles = by_title(records)
    joined: list[Record] = []
    for index, row in enumerate(rows):
        where = f"{source}: row {index}"
        title = row_title(row)
        if title is None:
            raise TaskDataError(
                f"{where}: no title in reward_model.title or extra_info.tools_kwargs",
                fix="use UserRL's verl row format",
            )
        record = titles.get(title.casefold())
        if record is None:
            raise TaskDataError(
                f"{where}: title {title!r} is not in the records file",
                fix="pass the entities/stories file this parquet was made from",
            )
        check(row, record, where)
        joined.append(record)
    return joined


def _telepathy_row_check(row: Mapping[str, Any], entity: TelepathyEntity, where: str) -> None:
    reward_model = row.get("reward_model")
    truth = reward_model.get("ground_truth") if isinstance(reward_model, Mapping) else None
    if truth is not None and str(truth).strip() != entity.target_entity:
        raise TaskDataError(
            f"{where}: ground_truth disagrees with entity {entity.id!r}'s target_entity",
            value=truth,
            fix="pass the entities file this parquet was made from",
        )


def _turtle_row_check(row: Mapping[str, Any], story: TurtleStory, where: str) -> None:
    reward_model = row.get("reward_model")
    if not isinstance(reward_model, Mapping):
        return
    for key, expected in (("surface", story.surface), ("bottom", story.bottom)):
        value = reward_model.get(key)
        if value is not None and str(value).strip() != expected:
            raise TaskDataError(
                f"{where}: reward_model.{key} disagrees with story {story.id!r}",
                value=value,
                fix="pass the stories file this parquet was made from",
            )


def split_held_out(
    records: Sequence[Record], n_eval: int, seed: int
) -> tuple[list[Record], list[Record]]:
    """A seeded split of one file into training and held-out records (``n_eval`` of them),
    for when no evaluation file is given; the order within each part is the file's."""
    import random

    if not 1 <= n_eval < len(records):
        raise TaskDataError(
            f"cannot hold out {n_eval} of the {len(records)} tasks for evaluation",
            fix="lower tasks.n_eval or give tasks.eval_path",
        )
    held = set(random.Random(seed).sample(range(len(records)), n_eval))
    train = [record for index, record in enumerate(records) if index not in held]
    return train, [record for index, record in enumerate(records) if index in held]
