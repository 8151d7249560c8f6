"""File-name parsers: every valid name is accepted with the right fields, every invalid one is a ValueError."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multimae_der.data.naming import (
    CREMAD_EMOTIONS,
    CREMAD_LEVELS,
    CREMAD_SENTENCES,
    parse_cremad_name,
    parse_iemocap_evaluation,
    parse_iemocap_line,
    parse_iemocap_utterance,
    parse_ravdess_name,
)

# ---------------------------------------------------------------------------------------------- RAVDESS


def ravdess_valid(mm: int, vc: int, ee: int, ii: int, ss: int, rr: int, aa: int, ext: str) -> bool:
    """Independent statement of the RAVDESS convention."""
    if mm not in (1, 2, 3) or vc not in (1, 2) or ii not in (1, 2) or ss not in (1, 2) or rr not in (1, 2):
        return False
    if not 1 <= ee <= 8 or not 1 <= aa <= 24:
        return False
    if vc == 2 and ee > 6:  # song: neutral, calm, happy, sad, angry, fearful only
        return False
    if ee == 1 and ii == 2:  # no strong neutral
        return False
    return ext in ("", ".wav" if mm == 3 else ".mp4")


two = st.integers(0, 99)


@settings(max_examples=400, deadline=None)
@given(two, two, two, two, two, two, two, st.sampled_from(["", ".mp4", ".wav", ".MP4", ".avi"]))
def test_ravdess_accepts_exactly_the_valid_names(mm, vc, ee, ii, ss, rr, aa, ext):
    name = f"{mm:02d}-{vc:02d}-{ee:02d}-{ii:02d}-{ss:02d}-{rr:02d}-{aa:02d}{ext}"
    if ravdess_valid(mm, vc, ee, ii, ss, rr, aa, ext.lower()):
        parsed = parse_ravdess_name("Actor_01/" + name)
        assert (parsed.modality, parsed.vocal_channel, parsed.emotion, parsed.intensity, parsed.statement,
                parsed.repetition, parsed.actor) == (mm, vc, ee, ii, ss, rr, aa)
        assert parsed.stem == name.rsplit(".", 1)[0] if ext else parsed.stem == name
    else:
        with pytest.raises(ValueError, match="RAVDESS"):
            parse_ravdess_name(name)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_ravdess_never_crashes_on_arbitrary_text(text):
    try:
        parse_ravdess_name(text)
    except ValueError as exc:
        assert str(exc)


def test_ravdess_known_examples():
    p = parse_ravdess_name("02-01-06-01-02-01-12.mp4")
    assert p.emotion_name == "fearful" and p.actor == 12 and not p.is_audio_video
    assert parse_ravdess_name("01-01-02-02-01-01-24.mp4").emotion_name == "calm"
    for bad, why in [("01-01-01-02-01-01-01.mp4", "neutral has no strong"), ("01-02-07-01-01-01-01.mp4", "song"),
                     ("01-01-01-01-01-01-25.mp4", "actor"), ("01-01-03-01-01-01-01.wav", "extension"),
                     ("1-1-1-1-1-1-1.mp4", "not a RAVDESS name"), ("٠١-01-01-01-01-01-01.mp4", "not a RAVDESS")]:
        with pytest.raises(ValueError, match=why):
            parse_ravdess_name(bad)
    with pytest.raises(ValueError):
        parse_ravdess_name(None)  # type: ignore[arg-type]

# ---------------------------------------------------------------------------------------------- CREMA-D


upper3 = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=3, max_size=3)


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 9999), st.one_of(st.sampled_from(CREMAD_SENTENCES), upper3),
       st.one_of(st.sampled_from(sorted(CREMAD_EMOTIONS)), upper3),
       st.one_of(st.sampled_from(CREMAD_LEVELS), st.text(alphabet="ABHILMOX", min_size=2, max_size=2)),
       st.sampled_from(["", ".flv", ".wav", ".txt"]))
def test_cremad_accepts_exactly_the_valid_names(actor, sentence, emotion, level, ext):
    name = f"{actor:04d}_{sentence}_{emotion}_{level}{ext}"
    valid = (1001 <= actor <= 1091 and sentence in CREMAD_SENTENCES and emotion in CREMAD_EMOTIONS
             and level in CREMAD_LEVELS and ext != ".txt")
    if valid:
        parsed = parse_cremad_name("VideoFlash/" + name)
        assert (parsed.actor, parsed.sentence, parsed.emotion, parsed.level) == (actor, sentence, emotion, level)
    else:
        with pytest.raises(ValueError, match="CREMA-D"):
            parse_cremad_name(name)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_cremad_never_crashes_on_arbitrary_text(text):
    try:
        parse_cremad_name(text)
    except ValueError as exc:
        assert str(exc)


def test_cremad_known_examples():
    p = parse_cremad_name("1001_DFA_ANG_XX.flv")
    assert p.emotion_name == "angry" and p.actor == 1001
    with pytest.raises(ValueError, match="actor 1092"):
        parse_cremad_name("1092_DFA_ANG_XX.flv")
    with pytest.raises(ValueError, match="emotion SUR"):
        parse_cremad_name("1001_DFA_SUR_XX.flv")

# ---------------------------------------------------------------------------------------------- IEMOCAP


@st.composite
def iemocap_names(draw):
    session = draw(st.integers(1, 5))
    mocap = draw(st.sampled_from("FM"))
    if draw(st.booleans()):
        dialog_part = f"impro{draw(st.integers(0, 99)):02d}{draw(st.sampled_from(['', 'a', 'b']))}"
    else:
        dialog_part = (f"script{draw(st.integers(0, 99)):02d}_{draw(st.integers(0, 9))}"
                       f"{draw(st.sampled_from(['', 'a', 'b']))}")
    speaker = draw(st.sampled_from("FM"))
    turn = draw(st.one_of(st.integers(0, 999).map(lambda i: f"{i:03d}"), st.integers(0, 9).map(lambda i: f"XX{i}")))
    return session, f"Ses{session:02d}{mocap}_{dialog_part}", speaker, turn


@settings(max_examples=300, deadline=None)
@given(iemocap_names())
def test_iemocap_accepts_valid_utterances(parts):
    session, dialog, speaker, turn = parts
    parsed = parse_iemocap_utterance(f"{dialog}_{speaker}{turn}.wav")
    assert (parsed.session, parsed.dialog, parsed.speaker_gender, parsed.turn) == (session, dialog, speaker, turn)
    assert parsed.speaker == f"Ses{session:02d}{speaker}"


@settings(max_examples=300, deadline=None)
@given(iemocap_names(), st.sampled_from(["session", "gender", "kind", "turn", "ext"]))
def test_iemocap_rejects_broken_utterances(parts, broken):
    session, dialog, speaker, turn = parts
    name = f"{dialog}_{speaker}{turn}"
    if broken == "session":
        name = name.replace(f"Ses{session:02d}", f"Ses{session + 5:02d}", 1)
    elif broken == "gender":
        name = name[:-4] + "X" + name[-3:]
    elif broken == "kind":
        name = name.replace("impro", "improv").replace("script", "scrpt")
    elif broken == "turn":
        name = name[:-1]
    else:
        name += ".mp3"
    with pytest.raises(ValueError, match="IEMOCAP"):
        parse_iemocap_utterance(name)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_iemocap_never_crashes_on_arbitrary_text(text):
    for fn in (parse_iemocap_utterance, parse_iemocap_line):
        try:
            fn(text)
        except ValueError as exc:
            assert str(exc)
    lines, problems = parse_iemocap_evaluation(text)
    assert isinstance(lines, list) and isinstance(problems, list)


@settings(max_examples=200, deadline=None)
@given(iemocap_names(), st.floats(0, 1000), st.floats(0.01, 30),
       st.sampled_from(["neu", "hap", "exc", "ang", "sad", "fru", "xxx"]))
def test_iemocap_line_round_trip(parts, start, length, label):
    _, dialog, speaker, turn = parts
    end = start + length
    line = f"[{start:.4f} - {end:.4f}]\t{dialog}_{speaker}{turn}\t{label}\t[2.5000, 3.0000, 1.5000]"
    parsed = parse_iemocap_line(line)
    assert parsed.label == label and parsed.vad == (2.5, 3.0, 1.5)
    assert parsed.start == pytest.approx(start, abs=1e-4) and parsed.end == pytest.approx(end, abs=1e-4)


def test_iemocap_evaluation_file_reports_bad_lines():
    text = ("% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"
            "[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]\n"
            "C-E2:\tNeutral;\t()\n\n"
            "[9.0 - 8.0]\tSes01F_impro01_M000\tang\t[2.5000, 2.5000, 2.5000]\n"
            "[10.0 - 11.0]\tSes01F_impro01_M001\tzzz\t[2.5000, 2.5000, 2.5000]\n")
    lines, problems = parse_iemocap_evaluation(text, "Ses01F_impro01.txt")
    assert [ln.utterance.name for ln in lines] == ["Ses01F_impro01_F000"]
    assert len(problems) == 2 and problems[0].startswith("Ses01F_impro01.txt:6:") and "not after" in problems[0]
    assert "label 'zzz'" in problems[1]
