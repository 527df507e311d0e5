from docutils import nodes

from poisoncurv.book.sphinx_tables import STACK_FROM, header_names, label_cells


def table(n_cols: int, n_rows: int = 2) -> nodes.table:
    """A docutils table with a header row ``c0 … c<n-1>`` and ``n_rows`` body rows of paragraphs ``r<i>c<j>``."""
    group = nodes.tgroup(cols=n_cols)
    head = nodes.thead("", nodes.row("", *[nodes.entry("", nodes.paragraph(text=f"c{j} & <x>")) for j in range(n_cols)]))
    body = nodes.tbody("", *[nodes.row("", *[nodes.entry("", nodes.paragraph(text=f"r{i}c{j}")) for j in range(n_cols)])
                             for i in range(n_rows)])
    group += [head, body]
    return nodes.table("", group)


def test_wide_tables_get_a_label_in_every_body_cell():
    t = table(STACK_FROM)
    list(t.findall(nodes.thead))[0].children[0].children[1].children[0] += nodes.raw("", "<wbr>", format="html")
    assert header_names(t)[:2] == ["c0 & <x>", "c1 & <x>"]            # raw HTML (a break hint) is not a name
    assert label_cells(t) and "stack-narrow" in t["classes"]
    cells = list(list(t.findall(nodes.tbody))[0].findall(nodes.entry))
    labels = [next(iter(c.findall(nodes.raw))).astext() for c in cells]
    assert len(labels) == 2 * STACK_FROM
    assert labels[1] == '<span class="cell-label">c1 &amp; &lt;x&gt;: </span>'       # escaped, before the value
    assert [c.astext().endswith(f"r0c{j}") for j, c in enumerate(cells[:STACK_FROM])] == [True] * STACK_FROM


def test_narrow_tables_are_left_alone():
    t = table(STACK_FROM - 1)
    assert not label_cells(t) and "stack-narrow" not in t["classes"] and not list(t.findall(nodes.raw))
