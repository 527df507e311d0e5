"""The claims ledger against the committed results and the committed chapters."""

import json

import pytest

from poisoncurv.book.claims import STATUSES, check_results, committed_values, evaluate, load_ledger
from poisoncurv.book.nbcheck import chapters
from poisoncurv.core.paths import REPO_ROOT
from poisoncurv.core.prose import prose_text

LEDGER = load_ledger()
VALUES = committed_values()
PROVENANCE_FIELDS = {"git_commit", "profile", "device", "device_name", "data_source", "versions", "wall_time_s"}


def test_every_paper_claim_is_listed_once():
    assert [c["id"] for c in LEDGER if c["source"] == "paper"] == ["C1", "C2", "C3", "C4", "C5", "C6", "E1", "E2", "E3"]


def test_companion_claims_are_marked_and_unique(tmp_path):
    own = [c for c in LEDGER if c["source"] == "companion"]
    assert own and all(c["paper"].startswith("not in the paper") for c in own)
    assert len({c["id"] for c in LEDGER}) == len(LEDGER)
    from poisoncurv.book.claims import ledger_table

    rows = {r[0]: r[1] for r in ledger_table(LEDGER, VALUES).rows}
    assert all(rows[c["id"]].startswith("**companion's claim") for c in own)
    assert not rows["C1"].startswith("**companion")
    bad = tmp_path / "claims.yml"
    bad.write_text("- {id: X1, claim: c, paper: p, status: partly, source: reviewer, checks: []}\n")
    with pytest.raises(ValueError, match="source"):
        load_ledger(bad)


@pytest.mark.parametrize("claim", LEDGER, ids=lambda c: c["id"])
def test_status_matches_evidence(claim):
    results = check_results([claim], VALUES)
    ran = [r for r in results if r.value is not None]
    if claim["status"] == "reproduced":
        assert results and all(r.passed for r in results), [r for r in results if not r.passed]
    elif claim["status"] == "partly":
        # what is claimed to hold must hold: every check of a partly reproduced claim passes; the note says what is missing
        assert results and all(r.passed for r in results) and claim.get("note"), [r for r in results if not r.passed]
    elif claim["status"] == "not reproduced":
        assert ran and not all(r.passed for r in ran) and claim.get("note")
    else:
        assert claim["status"] == "not yet run" and not ran


def test_checks_name_existing_chapters():
    known = set(chapters())
    for claim in LEDGER:
        for chk in claim["checks"]:
            assert chk["chapter"] in known, f"{claim['id']} names unknown chapter {chk['chapter']}"


def test_rules():
    assert evaluate({"expect": 2.0, "tol": 0.01}, 2.009) and not evaluate({"expect": 2.0, "tol": 0.01}, 2.02)
    assert evaluate({"max": 1e-8}, 1e-9) and not evaluate({"max": 1e-8}, 1e-7)
    assert evaluate({"min": 0.9}, 0.95) and not evaluate({"min": 0.9}, None)
    assert set(STATUSES) == {"reproduced", "partly", "not reproduced", "not yet run"}


@pytest.mark.parametrize("path", sorted((REPO_ROOT / "results").glob("*.json")), ids=lambda p: p.stem)
def test_results_carry_provenance_and_match_the_committed_chapter(path):
    data = json.loads(path.read_text())
    assert PROVENANCE_FIELDS <= set(data["provenance"])
    chapter = REPO_ROOT / "book" / f"{path.stem}.ipynb"
    assert chapter.exists(), f"results file {path.name} has no chapter"
    glued = {}
    for cell in json.loads(chapter.read_text())["cells"]:
        for out in cell.get("outputs", []):
            rec = out.get("data", {}).get("application/papermill.record/text/plain")
            if rec is not None:
                glued[out["metadata"]["scrapbook"]["name"]] = rec
    assert glued, "the committed chapter has no glued values"
    for key, value in data["values"].items():
        assert glued[key] == prose_text(value), f"{key}: chapter shows {glued[key]}, results file has {value!r}"
    params = chapter.read_text()
    assert f"profile = '{data['provenance']['profile']}'" in params or f'profile = "{data["provenance"]["profile"]}"' in params


def test_figure_labels_are_unique_and_named_by_chapter():
    from poisoncurv.book.claims import figure_index

    figures = figure_index()
    names = [f["name"] for f in figures]
    assert len(names) == len(set(names)), "duplicate figure labels"
    for f in figures:
        number = int(f["chapter"][2:4])
        assert f["name"].startswith(f"fig-ch{number}-"), f
        assert f["caption"], f"{f['name']} has no caption"


def test_notes_are_myst_and_figure_rows_link_to_figures():
    from poisoncurv.book.claims import caption_summary, figure_table, notes_markdown

    text = notes_markdown([{"id": "C9", "status": "partly", "note": "holds for\n $\\ell_{\\text{eff}}^2 = \\ell^2 + c\\kappa$"}])
    assert text == "* **C9** (partly): holds for $\\ell_{\\text{eff}}^2 = \\ell^2 + c\\kappa$"
    assert caption_summary("Spike $|a|$ at {glue:text}`ch1_x` inputs. More.") == "Spike $|a|$ at … inputs"
    table = figure_table()
    assert table.rows and all(r[0] == f"{{numref}}`{r[1][1:-1]}`" for r in table.rows)
    piped = [r for r in table.rows if "|" in str(r[3])]
    assert all(str(r[3]).replace("|", "\\|") in table.markdown() for r in piped)   # a caption's | escaped in its row
    from poisoncurv.core.tables import Table

    assert "| Spike $\\|a\\|$ |" in Table("tbl-x", "c", ["caption"], [["Spike $|a|$"]]).markdown()  # even when no caption has one


def test_profile_restricted_checks_are_skipped_only_for_other_profiles(tmp_path):
    claim = {"id": "X", "checks": [{"chapter": "ch", "key": "a", "max": 1.0},
                                   {"chapter": "ch", "key": "b", "min": 5.0, "profiles": ["cpu"]}]}
    values = {"ch": {"a": 0.5, "b": 1.0}}
    assert [r.key for r in check_results([claim], values, profile="smoke")] == ["a"]
    assert [r.passed for r in check_results([claim], values, profile="cpu")] == [True, False]
    assert [r.passed for r in check_results([claim], values)] == [True, False]      # committed: every rule
    bad = tmp_path / "claims.yml"
    bad.write_text("- {id: X1, claim: c, paper: p, status: partly, checks: [{chapter: ch, key: a, max: 1, profiles: [gpu2]}]}\n")
    with pytest.raises(ValueError, match="profiles"):
        load_ledger(bad)


def test_rules_read_as_prose():
    from poisoncurv.book.claims import rule_text

    assert rule_text({"max": 1e-08}) == "≤ 10⁻⁸" and rule_text({"expect": 2.0, "tol": 0.01}) == "= 2 ± 0.01"
    assert rule_text({"min": 0.5}) == "≥ 0.5" and rule_text({"equals": True}) == "== yes"
