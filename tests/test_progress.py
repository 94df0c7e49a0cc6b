"""Progress bars: inner bars nest under the study's bar with an ETA and vanish; outside a study they stay."""

from __future__ import annotations

from esoct.progress import inner_progress, progress_bar, showing_inner_progress


def test_inner_progress_is_a_study_scoped_switch():
    assert inner_progress() is False
    with showing_inner_progress(True):
        assert inner_progress() is True
        with showing_inner_progress(False):
            assert inner_progress() is False
        assert inner_progress() is True
    assert inner_progress() is False


def test_a_bar_shows_count_unit_and_eta_and_a_disabled_one_prints_nothing(capsys):
    from tqdm.auto import tqdm

    outer = tqdm(total=2, desc="study")
    inner = progress_bar(range(3), desc="radiomics", unit="scans")
    assert inner.pos == outer.pos + 1 or abs(inner.pos) == 1  # nested: the next line down
    assert inner.leave is None  # vanishes when it ends, unless it is the only bar
    for _ in inner:
        pass
    outer.close()
    err = capsys.readouterr().err
    assert "radiomics: 0/3 scans |" in err and "00:00<" in err
    assert "radiomics: 3/3" not in err  # the nested bar was cleared, not left behind
    for _ in progress_bar(range(3), desc="alone", unit="scans"):
        pass
    assert "alone: 3/3 scans |" in capsys.readouterr().err  # a bar of its own stays on screen
    for _ in progress_bar(range(3), desc="quiet", unit="x", enabled=False):
        pass
    assert "quiet" not in capsys.readouterr().err
