"""The body an endpoint receives for an event, under the endpoint's profile: one place for the delivery pass,
the pull API and ``hotline-eval webhooks render``, so all three send and show the same bytes.

An event's stored payload is the rating as it stood when the event happened. Facts about the *call* that were
only learned later (the 工单号 a case record brought after the rating, say) are filled into the holes they left,
so a rating held for want of its 办件编号 goes out once the case number arrives. Nothing else is refreshed: a
``rating.created`` body does not grow the verdict given a week later; that is the next event's to carry.

``native`` is the stored payload as it always was, byte for byte.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import object_session

from rating_core.outbox.outbox import rating_section
from rating_core.outbox.profile import LoadedProfile, ProfileError, load_profile
from rating_core.outbox.render import Refusal, RenderContext, render, validate
from rating_core.store.database import REGION_CODE
from rating_core.store.models import OutboxEvent

# The rating's items that come from the call record, not from the rating: each may be learned after it.
CALL_FACTS = ("case_number", "service_item", "department", "evaluated_staff", "region_code")


class Held(Exception):
    """The profile cannot express the event as things stand; ``reasons`` say why, in Chinese, for the admin."""

    def __init__(self, reasons: list[str] | tuple[str, ...]) -> None:
        super().__init__("；".join(reasons))
        self.reasons = tuple(reasons)


@dataclass(frozen=True)
class Body:
    text: str
    digest: str

    @classmethod
    def of(cls, document: dict[str, Any], *, sort_keys: bool) -> Body:
        # A profile's fields go in its order; native has always been sent with sorted keys.
        text = json.dumps(document, ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys)
        return cls(text, hashlib.sha256(text.encode("utf-8")).hexdigest())


def call_fact_holes(stored: dict[str, Any]) -> list[str]:
    """The call's facts ``stored`` lacks: only these are looked up again."""
    then = stored.get("rating") or {}
    return [key for key in CALL_FACTS if then.get(key) in (None, "")]


def with_call_facts(stored: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """``stored`` with the call's facts it lacked taken from ``current`` (the payload's ``rating`` as it is now)."""
    learned = {key: current[key] for key in call_fact_holes(stored) if current.get(key) not in (None, "")}
    return stored if not learned else {**stored, "rating": {**(stored.get("rating") or {}), **learned}}


@dataclass
class Bodies:
    """Renders events for endpoints, each profile loaded once (a pass makes one, so a fixed file is read anew)."""

    context: RenderContext
    _loaded: dict[str, LoadedProfile | ProfileError] = field(default_factory=dict)

    def profile(self, reference: str) -> LoadedProfile:
        """The profile an endpoint names; :class:`ProfileError` if it cannot be loaded."""
        if reference not in self._loaded:
            try:
                self._loaded[reference] = load_profile(reference)
            except ProfileError as exc:
                self._loaded[reference] = exc
        found = self._loaded[reference]
        if isinstance(found, ProfileError):
            raise found
        return found

    def sends(self, reference: str, event_type: str) -> bool:
        """Whether the profile sends this type of event (a profile that cannot be loaded is asked at send time,
        where the delivery is held with the reason rather than silently not made)."""
        try:
            mapping = self.profile(reference).mapping
        except ProfileError:
            return True
        return mapping is None or event_type in mapping.events

    def body(self, reference: str, event: OutboxEvent) -> Body | None:
        """The event's body under the profile, schema-checked; None if the profile sends no such event.

        Raises :class:`Held` when the profile cannot be loaded or cannot express the event.
        """
        try:
            profile = self.profile(reference)
        except ProfileError as exc:
            raise Held([f"报文格式“{reference}”无法加载：{exc}"]) from exc
        if profile.native:
            return Body.of(event.payload, sort_keys=True)
        rating = event.rating
        if rating is None:
            raise Held(["该事件的评价已不在库中，无法按此格式生成报文"])
        payload = event.payload
        if call_fact_holes(payload):  # the rating as it is now is read only when there is a hole to fill
            session = object_session(event)
            region_code = session.info.get(REGION_CODE) if session else None
            payload = with_call_facts(payload, rating_section(rating, region_code))
        try:
            document = render(profile, payload, rating.public_id, self.context)
        except Refusal as exc:
            raise Held(exc.reasons) from exc
        if document is None:
            return None
        problems = validate(profile, document)
        if problems:
            raise Held([f"未通过“{profile.name}”的 JSON Schema 校验：{problem}" for problem in problems])
        return Body.of(document, sort_keys=False)
