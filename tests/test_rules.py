"""The shipped rules, and what a broken rules file gets."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rating_core.rules.rulebook import DEFAULT_RULES_FILE, RulesError, load_rules, parse_rules
from rating_core.rules.settings import Settings


def shipped() -> dict:
    return yaml.safe_load(DEFAULT_RULES_FILE.read_text(encoding="utf-8"))


def test_levels_scores_and_negatives(rules) -> None:
    table = [(lv.name, lv.stars, lv.score, lv.negative) for lv in rules.levels]
    assert table == [
        ("非常满意", 5, 10, False),
        ("满意", 4, 8, False),
        ("基本满意", 3, 6, False),
        ("不满意", 2, 3, True),
        ("非常不满意", 1, 0, True),
    ]


def test_both_hotlines_shipped_with_their_own_prompts_and_tags(rules) -> None:
    h12345, h12333 = rules.hotline("12345"), rules.hotline("12333")
    assert h12345.prompts["menu"] != h12333.prompts["menu"]
    assert {t.name for t in h12345.tags} != {t.name for t in h12333.tags}
    assert "推诿扯皮/多次跑腿" in {t.name for t in h12345.tags}
    for profile in (h12345, h12333):
        assert [rules.level_for_key(profile, k).code for k in "12345"] == [lv.code for lv in rules.levels]
        assert rules.level_for_key(profile, "9") is None
        assert profile.sound("menu") == f"hotline-eval/{profile.code}/menu"
        assert profile.menu.plays == 2


def test_unknown_hotline_names_the_known_ones(rules) -> None:
    with pytest.raises(KeyError, match="12345"):
        rules.hotline("110")


def test_a_hotline_overrides_defaults_key_by_key() -> None:
    doc = shipped()
    doc["hotlines"]["12333"]["menu"] = {"plays": 3}
    rules = parse_rules(doc)
    assert rules.hotline("12333").menu.plays == 3
    assert rules.hotline("12333").menu.timeout_ms == 6000  # kept from defaults
    assert rules.hotline("12345").menu.plays == 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["defaults"]["keys"].__setitem__("6", "delighted"), "unknown levels"),
        (lambda d: d["defaults"].__setitem__("repeat_key", "1"), "distinct DTMF keys"),
        (lambda d: d["defaults"]["keys"].__setitem__("A", "satisfied"), "distinct DTMF keys"),
        (lambda d: d["hotlines"]["12345"]["prompts"].pop("thanks"), "prompts missing: thanks"),
        (lambda d: d["hotlines"]["12345"]["tags"].append({"key": "1", "code": "x", "name": "x"}), "tag keys"),
        (lambda d: d["defaults"]["menu"].__setitem__("plays", 0), "plays"),
        (lambda d: d.__setitem__("hotlines", {}), "no hotline"),
        # 补充评价: the SMS must carry its link; a sender needs a gateway and every hotline a text.
        (lambda d: d["defaults"].__setitem__("sms_reminder", "请评价{name}"), "must contain {link}"),
        (lambda d: d["defaults"].__setitem__("sms_reminder", "{link} {number}"), "only"),
        (lambda d: d["lifecycle"]["supplementary"]["reminder"].pop("gateway"), "names no gateway"),
        (lambda d: d["defaults"].__setitem__("sms_reminder", None), "have no sms_reminder text"),
        (lambda d: d["lifecycle"]["supplementary"]["reminder"].__setitem__("quiet_hours", {"start": "21:00",
                                                                                          "end": "21:00"}),
         "same time"),
        (lambda d: d["lifecycle"]["second_rating"]["dtmf"].__setitem__("speech", "ignore"), "second_rating"),
    ],
)
def test_inconsistent_rules_are_refused(change, message: str) -> None:
    doc = shipped()
    change(doc)
    with pytest.raises(RulesError, match=message):
        parse_rules(doc)


def test_rules_file_from_the_environment(tmp_path: Path, monkeypatch) -> None:
    doc = shipped()
    doc["hotlines"] = {"12345": doc["hotlines"]["12345"]}
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    monkeypatch.setenv("HOTLINE_EVAL_RULES", str(path))
    assert list(load_rules(Settings().rules_file).hotlines) == ["12345"]


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="cannot read"):
        load_rules(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("levels: [\n", encoding="utf-8")
    with pytest.raises(RulesError, match="not valid YAML"):
        load_rules(bad)
