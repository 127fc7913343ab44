"""Writing findings back to Elasticsearch: the results documents, the write-back, the index template.

Two write modes, both idempotent so that a retried, repeated or concurrent run leaves the same data:

* :attr:`AnnotateMode.RESULTS_INDEX` (default): each outlier becomes one document in the results index,
  a copy of the source event plus an ``outliers`` object, under an ``_id`` derived only from what the
  outlier *is*. Writing it again overwrites the same document.
* :attr:`AnnotateMode.IN_PLACE` (opt-in): ee-outliers' own behaviour: the source event gets the
  ``outlier`` tag and an ``outliers`` object of parallel arrays.

Modules: :mod:`.documents` (what is stored), :mod:`.writing` (the two modes), :mod:`.in_place`,
:mod:`.transport` (requests under the time budget), :mod:`.failures` (error translation),
:mod:`.report` (what a write did), :mod:`.template` (the index template).
"""

from connector.results.documents import (
    OUTLIER_TAG,
    alert_document,
    alert_document_id,
    outlier_record,
    results_document,
    results_document_id,
)
from connector.results.in_place import InPlacePlan, plan_in_place_update
from connector.results.report import AnnotateMode, WriteOutcome, WriteReport
from connector.results.template import (
    DEFAULT_RESULTS_INDEX,
    TEMPLATE_VERSION,
    install_results_template,
    render_results_template,
    results_index_template,
    results_template_name,
)
from connector.results.transport import BULK_CHUNK_SIZE
from connector.results.writing import write_outliers, write_result_documents

__all__ = [
    "BULK_CHUNK_SIZE",
    "DEFAULT_RESULTS_INDEX",
    "OUTLIER_TAG",
    "TEMPLATE_VERSION",
    "AnnotateMode",
    "InPlacePlan",
    "WriteOutcome",
    "WriteReport",
    "alert_document",
    "alert_document_id",
    "install_results_template",
    "outlier_record",
    "plan_in_place_update",
    "render_results_template",
    "results_document",
    "results_document_id",
    "results_index_template",
    "results_template_name",
    "write_outliers",
    "write_result_documents",
]
