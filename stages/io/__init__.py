"""Input builders that are not plain files: the Python documentation corpus of the quickstart."""
