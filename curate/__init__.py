"""curate: prepare pretraining data for long-context language models.

Cleaning the MAP-Neo way, then In-Context Pretraining ordering and packing, as datatrove pipelines.
"""

__version__ = "0.1.0"
