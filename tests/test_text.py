from agent.language.text import (
    ClauseSplitter,
    ReasoningFilter,
    clean_clause,
    ends_sentence,
    is_speakable,
    is_substantive,
)


def split_stream(text: str, piece: int = 3) -> list[str]:
    splitter = ClauseSplitter()
    out: list[str] = []
    for i in range(0, len(text), piece):
        out += splitter.push(text[i : i + piece])
    return out + splitter.flush()


def test_clauses_are_cut_as_tokens_arrive():
    splitter = ClauseSplitter()
    assert splitter.push("Buenos días a todos") == []
    assert splitter.push(". Gracias") == ["Buenos días a todos."]
    assert splitter.flush() == ["Gracias"]


def test_first_clause_is_cut_early_at_a_comma_later_ones_need_more_text():
    text = "Bueno, vamos a empezar, si les parece bien, con el presupuesto del año."
    out = split_stream(text)
    assert out == ["Bueno, vamos a empezar,", "si les parece bien, con el presupuesto del año."]


def test_splitting_loses_no_text_whatever_the_token_size():
    text = "El Dr. Pérez llegó a las 3.5 horas. ¿Vienes? ¡Sí! Cuesta 4,50 euros, más o menos; vale."
    for piece in (1, 2, 5, 11, 100):
        out = split_stream(text, piece)
        assert " ".join(out) == text, piece
    assert "El Dr. Pérez llegó a las 3.5 horas." in split_stream(text, 1)


def test_cjk_sentences_cut_without_spaces():
    assert split_stream("今日は。ありがとうございます。") == ["今日は。", "ありがとうございます。"]


def test_long_text_without_punctuation_is_cut_at_a_space():
    text = " ".join(["palabra"] * 60)
    out = split_stream(text, 7)
    assert len(out) > 1 and all(len(c) <= 160 for c in out)
    assert " ".join(out) == text


def test_reasoning_blocks_are_removed_across_token_edges():
    f = ReasoningFilter()
    pieces = ["<thi", "nk>the user wants", " Spanish</th", "ink>Hola", " <", "b>mundo"]
    out = "".join(f.push(p) for p in pieces) + f.flush()
    assert out == "Hola <b>mundo"


def test_clean_clause_strips_preamble_markup_and_quotes_but_keeps_every_script():
    assert clean_clause('Translation: "Hola a todos."', first=True) == "Hola a todos."
    assert clean_clause("**Hola** `a` <b>todos</b>", first=True) == "Hola a todos"
    assert clean_clause("Traducción: こんにちは、皆さん", first=True) == "こんにちは、皆さん"
    assert clean_clause("مرحبا بالجميع", first=False) == "مرحبا بالجميع"
    assert clean_clause("नमस्ते\x00 दोस्तों", first=False) == "नमस्ते दोस्तों"
    # a later clause that starts with a word like "Translation:" is left alone
    assert clean_clause("Output: 5 units", first=False) == "Output: 5 units"


def test_non_substantive_segments():
    for text in ("", "   ", "...", "¿?", "um", "Uh, um.", "hmm mm"):
        assert not is_substantive(text), text
    for text in ("Hi", "um, okay", "3", "こんにちは"):
        assert is_substantive(text), text
    assert not is_speakable("—…")


def test_a_sentence_ends_at_a_sentence_mark_of_any_script_not_at_a_comma_or_an_abbreviation():
    ended = ["To finish the design.", "Really?", "Wait!", "And then…", '"Stop."', "(Yes.)"]
    for text in [*ended, "終わりました。", "本当？", "هل انتهى؟", "काम पूरा हुआ।"]:
        assert ends_sentence(text), text
    for text in ("I would like", "to thank Maria,", "who worked late;", "ask Mr.", "", "  "):
        assert not ends_sentence(text), text
