"""Outbound profiles: what body a receiving platform wants for our events, as data (``profiles/*.yaml``).

A profile names the platform's fields in order and, for each, where its value
comes from (a path into the event's native payload, a setting, a fixed value,
or one of the derivations in :data:`DERIVATIONS`), its format (text of a
maximum length, a time in a pattern, a code from one of the profile's tables,
an integer) and whether the platform requires it. Beside each profile lies the
JSON Schema its bodies must pass (``<name>.schema.json``). ``native`` is built
in: the stored payload unchanged, checked against ``webhook_payload.schema.json``.

A province's interface that differs is a new YAML file, not code
(:func:`load_profile` takes a path as well as a shipped name).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, field_validator, model_validator

from rating_core.outbox.outbox import EVENT_TYPES
from rating_core.rules.frozen_model import FrozenModel
from rating_core.rules.yaml_file import read_yaml

PROFILES_DIR = Path(__file__).with_name("profiles")
NATIVE = "native"
NATIVE_SCHEMA = Path(__file__).with_name("webhook_payload.schema.json")
DEFAULT_PROFILE = "gbt39046"

# What a derived field may be computed from the event; rating_core.outbox.render computes each, and the
# README's table says what each means.
DERIVATIONS = {
    "rating_id": "评价的稳定标识（ratings.public_id）",
    "channel": "评价渠道：phone（按键或语音）、sms（短信链接补充评价）、default（系统默认评价）",
    "evaluation_type": "评价类型：active（主动评价）、default（默认评价）、added（补充评价，追加）",
    "evaluation_count": "评价次数：1 为来电后的评价，2 为差评整改后回访时的再次评价",
    "evaluated_at": "评价时间：评价作出的时间；整改满意度回访事件取回访答复的时间",
    "satisfaction": "满意度：评价等级；整改满意度回访事件取回访答复（满意 / 不满意）",
    "verified_true": "是否属实：核实结论为立行立改、限期整改、解释说明时为 yes，不予采纳时为 no",
    "reasonable": "是否合理：立行立改、限期整改为 yes，解释说明、不予采纳为 no",
    "malicious": "是否恶意评价：申诉复核认定恶意评价时为 yes，评价被采纳时为 no",
    "rectified": "整改结果：已整改为 yes，已核实尚未整改为 no",
    "reask_result": "回访结果（整改满意）：yes 满意，no 不满意",
    "reason_names": "差评原因：原因标签的中文名，以顿号分隔",
    "comment": "文字评价：市民在补充评价页写下的意见",
}
SETTINGS = ("region_code", "department_code", "data_source_code")


class ProfileError(ValueError):
    """The profile file is missing, malformed or inconsistent."""


class FieldSpec(FrozenModel):
    """One field of the platform's body, in the profile's order."""

    key: str = Field(min_length=1)
    # The standard's or the interface's name of the item (办件编号 …), for people reading the profile.
    title: str
    # Exactly one source: a dotted path into the native payload, a derivation, a setting, or a fixed value.
    path: str | None = None
    derive: str | None = None
    setting: str | None = None
    value: str | int | None = None
    format: Literal["text", "datetime", "code", "integer"] = "text"
    max_length: int | None = Field(None, ge=1)
    # datetime: a strftime pattern, in the profile's time zone.
    pattern: str | None = None
    # code: the table (in ``codes``) the value is looked up in.
    table: str | None = None
    # A required field without a value refuses the rating; an optional one is left out of the body.
    required: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> FieldSpec:
        given = [name for name in ("path", "derive", "setting", "value") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"field {self.key!r} needs exactly one of path, derive, setting, value; got {given}")
        if self.derive is not None and self.derive not in DERIVATIONS:
            raise ValueError(f"field {self.key!r}: unknown derivation {self.derive!r} "
                             f"(known: {', '.join(DERIVATIONS)})")
        if self.setting is not None and self.setting not in SETTINGS:
            raise ValueError(f"field {self.key!r}: unknown setting {self.setting!r} (known: {', '.join(SETTINGS)})")
        if (self.format == "datetime") != (self.pattern is not None):
            raise ValueError(f"field {self.key!r}: a pattern goes with format datetime, and only with it")
        if (self.format == "code") != (self.table is not None):
            raise ValueError(f"field {self.key!r}: a table goes with format code, and only with it")
        return self


class Profile(FrozenModel):
    name: str
    title: str
    version: str
    timezone: str = "Asia/Shanghai"
    # The event types this profile sends; the others render to nothing.
    events: tuple[str, ...]
    fields: tuple[FieldSpec, ...]
    # Our value → the platform's code, per table.
    codes: dict[str, dict[str, str]] = {}

    @field_validator("events")
    @classmethod
    def _known_events(cls, events: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(events) - set(EVENT_TYPES))
        if unknown or not events:
            raise ValueError(f"unknown or no event types {unknown} (known: {', '.join(EVENT_TYPES)})")
        return events

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Profile:
        keys = [spec.key for spec in self.fields]
        repeated = sorted({key for key in keys if keys.count(key) > 1})
        if repeated:
            raise ValueError(f"fields named twice: {repeated}")
        for spec in self.fields:
            if spec.table is not None and spec.table not in self.codes:
                raise ValueError(f"field {spec.key!r}: no code table {spec.table!r}")
        return self

    @property
    def settings_needed(self) -> tuple[str, ...]:
        return tuple(spec.setting for spec in self.fields if spec.setting is not None)


class LoadedProfile(FrozenModel):
    """A profile and its schema, or ``native`` (no fields: the stored payload is the body)."""

    name: str
    title: str
    schema_: dict[str, Any] = Field(alias="schema")
    mapping: Profile | None = None

    @property
    def native(self) -> bool:
        return self.mapping is None


def shipped_profiles() -> list[str]:
    """The profiles that come with the service: native first, then the YAML files in ``profiles/``."""
    return [NATIVE] + sorted(path.stem for path in PROFILES_DIR.glob("*.yaml"))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProfileError(f"cannot read schema {path}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ProfileError(f"schema {path} is not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise ProfileError(f"schema {path} is not a JSON object")
    return document


def parse_profile(document: object, schema: dict[str, Any]) -> LoadedProfile:
    """A profile from its parsed YAML and its schema; :class:`ProfileError` says what is wrong."""
    import jsonschema

    try:
        mapping = Profile.model_validate(document)
    except ValidationError as exc:
        raise ProfileError(f"invalid profile: {exc}") from exc
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ProfileError(f"profile {mapping.name}: its schema is not a valid JSON Schema: {exc.message}") from exc
    return LoadedProfile(name=mapping.name, title=mapping.title, schema=schema, mapping=mapping)


def load_profile(name_or_path: str | Path) -> LoadedProfile:
    """A shipped profile by name, or a profile file by path (its schema beside it, ``<stem>.schema.json``)."""
    if str(name_or_path) == NATIVE:
        return _native()
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        if str(name_or_path) not in shipped_profiles():
            raise ProfileError(f"unknown profile {name_or_path!r} (shipped: {', '.join(shipped_profiles())}; "
                               "or give the path of a .yaml file)")
        return _shipped(str(name_or_path))
    return _from_file(path)


@cache
def _native() -> LoadedProfile:
    return LoadedProfile(name=NATIVE, title="hotline-eval 原始格式（webhook_payload.schema.json 1.0）",
                         schema=_read_json(NATIVE_SCHEMA))


@cache
def _shipped(name: str) -> LoadedProfile:
    return _from_file(PROFILES_DIR / f"{name}.yaml")


def _from_file(path: Path) -> LoadedProfile:
    document = read_yaml(path, ProfileError, "profile file")
    loaded = parse_profile(document, _read_json(path.with_name(f"{path.stem}.schema.json")))
    if loaded.name != path.stem:
        raise ProfileError(f"profile file {path} names itself {loaded.name!r}: the name must be the file's stem")
    return loaded
