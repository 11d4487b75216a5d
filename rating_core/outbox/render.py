"""An event's body under a profile, and the check against the profile's schema: pure functions.

:func:`render` takes the event's stored payload (the native body), the rating's
public id and the deployment's codes; it reads no database and no clock, so the
delivery pass, the pull API and ``hotline-eval webhooks render`` all get the
same body for the same event. A rating the profile cannot express (a required
value missing, a value longer than the platform allows, a value its code table
lacks) raises :class:`Refusal` with every reason: a body is never truncated or
sent with a hole in it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from rating_core.outbox.profile import FieldSpec, LoadedProfile, Profile
from rating_core.rules.refusals import Reason, Refused
from rating_core.rules.rulebook import Rules
from rating_core.rules.settings import Settings

FIX_VERDICTS = ("immediate_fix", "deadline_fix")
SETTING_VARIABLES = {"region_code": "HOTLINE_EVAL_REGION_CODE", "department_code": "HOTLINE_EVAL_DEPARTMENT_CODE",
                     "data_source_code": "HOTLINE_EVAL_DATA_SOURCE_CODE"}


class Refusal(Refused):
    """The event cannot be rendered under the profile; ``reasons`` says why, in words for the admin page."""

    reason = Reason.INVALID

    def __init__(self, profile: str, reasons: list[str]) -> None:
        super().__init__(f"按“{profile}”格式无法生成报文：" + "；".join(reasons))
        self.profile = profile
        self.reasons = tuple(reasons)


@dataclass(frozen=True)
class RenderContext:
    """What a body may need besides the event: the deployment's codes and the reason tags' names."""

    region_code: str | None = None
    department_code: str | None = None
    data_source_code: str | None = None
    # Per hotline, reason tag code → its Chinese name (rules.yaml); a code without one is sent as it is.
    tag_names: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def setting(self, name: str) -> str | None:
        value: str | None = getattr(self, name)
        return value


def render_context(rules: Rules, region_code: str | None = None, department_code: str | None = None,
                   data_source_code: str | None = None) -> RenderContext:
    """The context of this deployment: its codes (from :class:`~rating_core.rules.settings.Settings`) and tags."""
    return RenderContext(region_code=region_code, department_code=department_code, data_source_code=data_source_code,
                         tag_names={code: {tag.code: tag.name for tag in hotline.tags}
                                    for code, hotline in rules.hotlines.items()})


def deployment_context(rules: Rules, settings: Settings) -> RenderContext:
    """:func:`render_context` with this deployment's codes: what the delivery pass, the pull API and ``webhooks
    render`` all render with, so the three give the same bytes."""
    return render_context(rules, settings.region_code, settings.department_code, settings.data_source_code)


def render(profile: LoadedProfile, event_payload: dict[str, Any], rating_public_id: str,
           context: RenderContext) -> dict[str, Any] | None:
    """The body ``profile`` sends for this event, its fields in the profile's order; None if it sends no such event.

    Raises :class:`Refusal` when the event cannot be expressed in the profile.
    """
    mapping = profile.mapping
    if mapping is None:  # native: the stored payload is the body, as it always was
        return copy.deepcopy(event_payload)
    if event_payload.get("type") not in mapping.events:
        return None
    body: dict[str, Any] = {}
    reasons: list[str] = []
    for spec in mapping.fields:
        raw = _source(spec, event_payload, rating_public_id, context)
        if raw is None or raw == "":
            if spec.required:
                reasons.append(_missing(spec))
            continue
        try:
            body[spec.key] = _formatted(spec, raw, mapping)
        except _Unfit as exc:
            reasons.append(str(exc))
    if reasons:
        raise Refusal(mapping.name, reasons)
    return body


def validate(profile: LoadedProfile, body: dict[str, Any]) -> list[str]:
    """What is wrong with ``body`` by the profile's JSON Schema, in plain words; empty when it passes."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(profile.schema_, format_checker=jsonschema.FormatChecker())
    errors = sorted(validator.iter_errors(body), key=lambda error: [str(part) for part in error.absolute_path])
    return [_plain(error) for error in errors]


class _Unfit(Exception):
    """One field's value does not fit its format; collected into the :class:`Refusal`."""


def _label(spec: FieldSpec) -> str:
    return f"“{spec.title}”（{spec.key}）"


def _missing(spec: FieldSpec) -> str:
    if spec.setting is not None:
        return f"缺少必填项{_label(spec)}：未设置 {SETTING_VARIABLES[spec.setting]}"
    if spec.path == "rating.case_number":
        return f"缺少必填项{_label(spec)}：该评价没有工单号"
    return f"缺少必填项{_label(spec)}"


def _source(spec: FieldSpec, payload: dict[str, Any], public_id: str, context: RenderContext) -> Any:
    if spec.value is not None:
        return spec.value
    if spec.setting is not None:
        return context.setting(spec.setting)
    if spec.path is not None:
        found: Any = payload
        for part in spec.path.split("."):
            found = found.get(part) if isinstance(found, dict) else None
        return found
    assert spec.derive is not None
    return _derive(spec.derive, payload, public_id, context)


def _derive(name: str, payload: dict[str, Any], public_id: str, context: RenderContext) -> Any:
    rating: dict[str, Any] = payload.get("rating") or {}
    complaint: dict[str, Any] | None = payload.get("complaint")
    data: dict[str, Any] = payload.get("data") or {}
    channel = rating.get("channel")
    verdict = complaint.get("verdict") if complaint else None
    if name == "rating_id":
        return public_id
    if name == "channel":
        return {"dtmf": "phone", "speech": "phone", "supplementary": "sms", "default": "default"}.get(str(channel))
    if name == "evaluation_type":
        # 补充评价 (the SMS link, after an unrated call) is what the platforms call an added (追加) rating.
        return {"default": "default", "supplementary": "added"}.get(str(channel), "active")
    if name == "evaluation_count":
        # The re-asked satisfaction after a 差评's rectification is the citizen's second rating of the case.
        return 2 if payload.get("type") == "complaint.satisfaction" else 1
    if name == "evaluated_at":
        return payload.get("occurred_at") if payload.get("type") == "complaint.satisfaction" else rating.get("rated_at")
    if name == "satisfaction":
        if payload.get("type") == "complaint.satisfaction":
            # The re-ask is a yes / no question (对处理结果是否满意): 满意 or 不满意, never a guessed extreme.
            return "satisfied" if data.get("satisfied") else "dissatisfied"
        return rating.get("level")
    if name == "verified_true":
        return None if verdict is None else ("no" if verdict == "not_adopted" else "yes")
    if name == "reasonable":
        return None if verdict is None else ("yes" if verdict in FIX_VERDICTS else "no")
    if name == "malicious":
        appeal = (complaint or {}).get("appeal") or {}
        finding = data.get("finding") or appeal.get("finding")
        if finding in ("malicious", "misjudged"):
            return "yes" if finding == "malicious" else "no"
        return "no" if rating.get("valid") else None  # not adopted for another reason: not ours to call malice
    if name == "rectified":
        if complaint is None or verdict is None or verdict == "not_adopted":
            return None
        return "yes" if complaint.get("rectified_at") else "no"
    if name == "reask_result":
        satisfied = complaint.get("citizen_satisfied") if complaint else None
        return None if satisfied is None else ("yes" if satisfied else "no")
    if name == "reason_names":
        names = context.tag_names.get(str(rating.get("hotline")), {})
        return "、".join(names.get(code, code) for code in rating.get("reason_codes") or [])
    if name == "comment":
        return rating.get("reason_text")
    raise AssertionError(f"derivation {name!r} is listed but not computed")


def _formatted(spec: FieldSpec, raw: Any, mapping: Profile) -> str | int:
    if spec.format == "integer":
        if isinstance(raw, bool) or not isinstance(raw, int | str) or not str(raw).lstrip("-").isdigit():
            raise _Unfit(f"{_label(spec)}应为整数，实为 {raw!r}")
        return int(raw)
    if spec.format == "datetime":
        try:
            moment = datetime.fromisoformat(str(raw))
        except ValueError:
            raise _Unfit(f"{_label(spec)}不是时间：{raw!r}") from None
        if moment.tzinfo is None:
            raise _Unfit(f"{_label(spec)}的时间没有时区：{raw!r}")
        assert spec.pattern is not None
        text = moment.astimezone(ZoneInfo(mapping.timezone)).strftime(spec.pattern)
    elif spec.format == "code":
        assert spec.table is not None
        key = ("yes" if raw else "no") if isinstance(raw, bool) else str(raw)
        table = mapping.codes[spec.table]
        if key not in table:
            raise _Unfit(f"{_label(spec)}的代码表“{spec.table}”中没有“{key}”")
        text = table[key]
    else:
        if isinstance(raw, dict | list | bool):
            raise _Unfit(f"{_label(spec)}应为文字，实为 {raw!r}")
        text = str(raw)
    if spec.max_length is not None and len(text) > spec.max_length:
        raise _Unfit(f"{_label(spec)}长 {len(text)} 个字符，超过平台限定的 {spec.max_length} 个")
    return text


_SCHEMA_WORDS = {
    "required": "缺少必填项",
    "maxLength": "超过允许的长度",
    "minLength": "短于要求的长度",
    "pattern": "格式不符",
    "enum": "不在允许的取值之中",
    "const": "不是规定的取值",
    "type": "类型不对",
    "format": "格式不符",
    "additionalProperties": "含有不允许的字段",
    "maximum": "超过允许的最大值",
    "minimum": "小于允许的最小值",
}


def _plain(error: Any) -> str:
    where = "/".join(str(part) for part in error.absolute_path) or "报文"
    words = _SCHEMA_WORDS.get(error.validator)
    return f"{where}：{words}（{error.message}）" if words else f"{where}：{error.message}"
