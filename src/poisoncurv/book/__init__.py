"""Book infrastructure: the chapter runtime (glue, figures, tables, provenance cell), the claims
ledger and figure index, re-execution of chapters (`rerun`) and the nbval notebook list."""

import sys


def rerun_main() -> int:
    """``poisoncurv-rerun``: :func:`poisoncurv.book.rerun.main`, or, without the ``book`` extra, one line that names
    the missing package and how to install it (exit status 2)."""
    try:
        from poisoncurv.book.rerun import main
    except ModuleNotFoundError as err:
        print(f"poisoncurv-rerun: needs the book extra ({err.name} is not installed): pip install 'poisoncurv[book]'",
              file=sys.stderr)
        return 2
    return main()
