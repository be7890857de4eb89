"""curate: prepare pretraining data for long-context language models.

Cleaning the MAP-Neo way, then In-Context Pretraining ordering and packing, as datatrove pipelines.
"""

__version__ = "0.1.0"

# A script that imports curate in any way (`import curate`, `from curate... import`, `from stages...`,
# which imports curate first) and would start worker processes outside `if __name__ == "__main__":`
# stops here with the line to fix, instead of looping (see curate/mainguard.py). Worker processes,
# `python -m curate`, notebooks and `python -c` are not checked.
from curate.mainguard import check_script_guard as _check_script_guard

_check_script_guard()
