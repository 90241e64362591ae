"""The word error rate of benchmarks/transcribe counts words, not how they are written."""

from __future__ import annotations

from benchmarks.transcribe.wer import edit_distance, normalise, score


def test_numbers_punctuation_case_and_accents_do_not_count() -> None:
    assert normalise("Press 1, then 25 — or 100%!", "en") == ["press", "one", "then", "twenty", "five", "or", "one", "hundred", "percent"]
    assert normalise("Press one; then twenty-five, or one hundred percent.", "en") == normalise("Press 1, then 25 — or 100%!", "en")
    assert normalise("the 2nd and 21st", "en") == ["the", "second", "and", "twenty", "first"]
    assert normalise("Marque 1, 21 o 100: contraseña, número", "es") == ["marque", "uno", "veintiuno", "o", "cien", "contrasena", "numero"]
    assert normalise("Appuyez sur 8 ou 71, l'option", "fr") == ["appuyez", "sur", "huit", "ou", "soixante", "et", "onze", "l'option"]
    assert normalise("OK, your voicemail", "en") == normalise("okay, your voice mail", "en")


def test_edit_distance_counts_substitutions_deletions_and_insertions() -> None:
    assert edit_distance(["a", "b", "c", "d"], ["a", "x", "c", "d", "e"]) == 2
    assert edit_distance([], ["a", "b"]) == 2
    assert edit_distance(["a", "b"], []) == 2
    result = score("Please call me back at 5.", "please call me mac at five", "en")
    assert (result.edits, result.reference_words) == (1, 6)
    assert abs(result.wer - 1 / 6) < 1e-9
