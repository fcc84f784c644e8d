"""What the pynetdicom Storage Commitment peers share (PS3.4 Annex J): the well-known UIDs,
reading the instances of a Referenced SOP Sequence or Failed SOP Sequence, and the Event
Information of a report as a data set and as a JSON record.

Imported by pynetdicom_commitscu.py and pynetdicom_commitscp.py beside it.
"""

from __future__ import annotations

from typing import Any

from pydicom.dataset import Dataset

STORAGE_COMMITMENT_PUSH_MODEL = "1.2.840.10008.1.20.1"
STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE = "1.2.840.10008.1.20.1.1"
REQUEST_STORAGE_COMMITMENT = 1


def references(data_set: Dataset, keyword: str = "ReferencedSOPSequence") -> list[list[str]]:
    """[[SOP class UID, SOP instance UID], ...] of the items of `keyword` (none if absent)."""
    return [
        [str(item.ReferencedSOPClassUID), str(item.ReferencedSOPInstanceUID)]
        for item in data_set.get(keyword, [])
    ]


def report_record(event_type: int | None, data_set: Dataset) -> dict[str, Any]:
    """A report as a record: {"event_type", "transaction_uid", "committed": [[class, instance]],
    "failed": [[class, instance, reason]]}."""
    return {
        "event_type": event_type,
        "transaction_uid": str(data_set.get("TransactionUID", "")),
        "committed": references(data_set),
        "failed": [
            [
                str(item.ReferencedSOPClassUID),
                str(item.ReferencedSOPInstanceUID),
                int(item.FailureReason),
            ]
            for item in data_set.get("FailedSOPSequence", [])
        ],
    }


def report_dataset(
    transaction_uid: str, committed: list[list[str]], failed: list[tuple[str, str, int]]
) -> Dataset:
    """The Event Information of a report (PS3.4 Table J.3-2); each sequence only when it has
    items (type 1C)."""
    data_set = Dataset()
    data_set.TransactionUID = transaction_uid
    if committed:
        data_set.ReferencedSOPSequence = []
        for sop_class, sop_instance in committed:
            item = Dataset()
            item.ReferencedSOPClassUID = sop_class
            item.ReferencedSOPInstanceUID = sop_instance
            data_set.ReferencedSOPSequence.append(item)
    if failed:
        data_set.FailedSOPSequence = []
        for sop_class, sop_instance, reason in failed:
            item = Dataset()
            item.ReferencedSOPClassUID = sop_class
            item.ReferencedSOPInstanceUID = sop_instance
            item.FailureReason = reason
            data_set.FailedSOPSequence.append(item)
    return data_set
