"""DICOM de-identification after the PS3.15 Basic Application Level Confidentiality Profile.

What is done to every data set (recursively, sequences included):

* person names (every PN element), IDs, addresses, phone numbers, institution / department /
  station names, physicians, operators, free-text comments and descriptions: replaced by a
  dummy (``D``), emptied (``Z``) or removed (``X``) as the profile's table E.1-1 says;
* patient IDs and accession / study numbers: a keyed pseudonym (HMAC-SHA256), so the same
  patient gets the same pseudonym in every file of one run (and across runs with the same key);
* every date / time / datetime element: emptied (no "retain longitudinal" option);
* every instance UID (study, series, SOP instance, frame of reference, the file meta's media
  storage UID…): replaced consistently by a new UID derived from the key; well-known UIDs
  from the DICOM registry (SOP classes, transfer syntaxes) are kept;
* all private tags, overlays and curves are removed; the 128-byte preamble is zeroed;
* ``PatientIdentityRemoved = YES`` and ``DeidentificationMethod`` are added.

Burned-in text in the pixels is not detected (``BurnedInAnnotation`` is reported as is).
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Any

from lepton_apps.errors import DataError

METHOD = "PS3.15 E.1 Basic Profile (lepton-apps)"
PSEUDONYMISED = {"PatientID", "OtherPatientIDs", "AccessionNumber", "StudyID", "IssuerOfPatientID",
                 "MedicalRecordLocator", "AdmissionID", "ServiceEpisodeID", "FillerOrderNumberImagingServiceRequest",
                 "PlacerOrderNumberImagingServiceRequest", "RequestedProcedureID", "PerformedProcedureStepID",
                 "ScheduledProcedureStepID", "StudyIDIssuer", "ClinicalTrialSubjectID"}
REMOVED = {
    "PatientAddress", "PatientTelephoneNumbers", "PatientTelecomInformation", "PatientBirthTime", "PatientAge",
    "PatientSize", "PatientWeight", "PatientMotherBirthName", "MilitaryRank", "BranchOfService", "Occupation",
    "AdditionalPatientHistory", "PatientComments", "MedicalAlerts", "Allergies", "EthnicGroup", "PatientReligiousPreference",
    "CountryOfResidence", "RegionOfResidence", "PatientState", "PregnancyStatus", "SmokingStatus",
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "InstitutionCodeSequence",
    "ReferringPhysicianAddress", "ReferringPhysicianTelephoneNumbers", "ReferringPhysicianIdentificationSequence",
    "PhysiciansOfRecordIdentificationSequence", "PerformingPhysicianIdentificationSequence",
    "StationName", "DeviceSerialNumber", "DetectorID", "PlateID", "CassetteID", "GantryID",
    "StudyDescription", "SeriesDescription", "ImageComments", "RequestAttributesSequence", "AdmittingDiagnosesDescription",
    "DerivationDescription", "ProtocolName", "PerformedProcedureStepDescription", "RequestedProcedureDescription",
    "ScheduledProcedureStepDescription", "CommentsOnThePerformedProcedureStep", "InterpretationText",
    "TextComments", "TextString", "ContentSequence", "OtherPatientIDsSequence", "OtherPatientNames",
    "PatientInsurancePlanCodeSequence", "ReferencedPatientSequence", "ReferencedStudySequence",
    "ResponsibleOrganization", "ResponsiblePerson", "ModifiedAttributesSequence", "OriginalAttributesSequence",
    "DigitalSignaturesSequence", "CurrentPatientLocation", "PatientInstitutionResidence", "AcquisitionComments",
    "IdentifyingComments", "FrameComments", "RequestingService", "ScheduledStationName", "PerformedStationName",
    "ScheduledPerformingPhysicianName", "NamesOfIntendedRecipientsOfResults", "PersonAddress",
    "PersonTelephoneNumbers", "OrderCallbackPhoneNumber", "OrderEnteredBy", "OrderEntererLocation",
    "InstitutionalDepartmentTypeCodeSequence", "StationAETitle", "SourceApplicationEntityTitle",
}
DUMMY_NAME = "ANONYMIZED"


class Deidentifier:
    """De-identifies pydicom Datasets with one key, so pseudonyms and UIDs are consistent across files."""

    def __init__(self, key: str | bytes | None = None):
        if key is None:
            key = secrets.token_bytes(32)
        self.key = key.encode() if isinstance(key, str) else bytes(key)
        self._uids: dict[str, str] = {}

    def pseudonym(self, value: str, prefix: str = "ANON") -> str:
        """Return a stable pseudonym of ``value`` under this key (HMAC-SHA256, 11 hex digits: fits SH's 16 chars)."""
        return f"{prefix}-{hmac.new(self.key, value.encode(), hashlib.sha256).hexdigest()[:11].upper()}"

    def uid(self, value: str) -> str:
        """Return the replacement UID of ``value`` (the same for the same input under this key)."""
        from pydicom.uid import generate_uid

        if value not in self._uids:
            digest = hmac.new(self.key, value.encode(), hashlib.sha256).hexdigest()
            self._uids[value] = generate_uid(prefix="2.25.", entropy_srcs=[digest])
        return self._uids[value]

    def dataset(self, ds) -> Any:
        """De-identify ``ds`` in place (file meta included) and return it."""
        from pydicom.uid import UID

        ds.remove_private_tags()
        self._walk(ds, UID)
        meta = getattr(ds, "file_meta", None)
        if meta is not None:
            for keyword in ("MediaStorageSOPInstanceUID",):
                if keyword in meta:
                    meta.MediaStorageSOPInstanceUID = self.uid(str(meta.MediaStorageSOPInstanceUID))
            for keyword in ("SourceApplicationEntityTitle", "SendingApplicationEntityTitle",
                            "ReceivingApplicationEntityTitle", "PrivateInformation", "PrivateInformationCreatorUID"):
                if keyword in meta:
                    delattr(meta, keyword)
        if hasattr(ds, "preamble"):
            ds.preamble = b"\x00" * 128
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = METHOD
        return ds

    def _walk(self, ds, UID) -> None:
        for elem in list(ds):
            tag = elem.tag
            keyword = elem.keyword
            if (tag.group & 0xFF00) in (0x5000, 0x6000) and tag.group % 2 == 0:
                del ds[tag]  # curves (50xx) and overlays (60xx) can carry burned-in text
                continue
            if elem.VR == "SQ":
                if keyword in REMOVED:
                    del ds[tag]
                    continue
                for item in elem.value:
                    self._walk(item, UID)
                continue
            if keyword in REMOVED:
                del ds[tag]
            elif keyword in PSEUDONYMISED:
                if elem.value not in (None, ""):
                    values = elem.value if elem.VM > 1 else [elem.value]
                    pseudo = [self.pseudonym(str(v)) for v in values]
                    elem.value = pseudo if elem.VM > 1 else pseudo[0]
            elif elem.VR == "PN":
                elem.value = DUMMY_NAME if keyword in ("PatientName",) else ""
            elif elem.VR in ("DA", "DT", "TM"):
                elem.value = ""
            elif elem.VR == "UI" and elem.value:
                values = elem.value if elem.VM > 1 else [elem.value]
                new = [v if UID(str(v)).is_valid and UID(str(v)).name != str(v) else self.uid(str(v)) for v in values]
                elem.value = new if elem.VM > 1 else new[0]
            elif elem.VR in ("LO", "SH", "ST", "LT", "UT") and keyword == "":
                del ds[tag]  # unknown (retired or unnamed) text elements: removing is the safe choice


def deidentify(src: str | os.PathLike, dst: str | os.PathLike, *, key: str | bytes | None = None) -> dict[str, Any]:
    """De-identify a DICOM file, or every DICOM file under a folder, into ``dst``.

    Returns ``{"written": n, "failed": [{"file", "reason"}], "skipped_non_dicom": n}``. File
    names are kept (relative layout preserved) unless they contain the patient ID, in which case
    they are replaced by the SOP instance pseudonym. Nothing identifying is printed or logged.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    from lepton_apps.io import atomic_path

    src, dst = Path(src), Path(dst)
    if not src.exists():
        raise DataError("input not found", where=str(src), fix="pass a DICOM file or a folder of DICOM files")
    if src.resolve() == dst.resolve():
        raise DataError("the output would overwrite the input", where=str(dst), fix="choose another output folder")
    files = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())
    tool = Deidentifier(key)
    out = {"written": 0, "failed": [], "skipped_non_dicom": 0}
    for f in files:
        rel = Path(f.name) if src.is_file() else f.relative_to(src)
        target = dst if (src.is_file() and dst.suffix) else dst / rel
        try:
            with open(f, "rb") as fh:
                head = fh.read(132)
            if head[128:132] != b"DICM" and f.suffix.lower() not in (".dcm", ".dicom"):
                out["skipped_non_dicom"] += 1
                continue
            ds = pydicom.dcmread(f, force=True)
            original_id = str(getattr(ds, "PatientID", "") or "")
            tool.dataset(ds)
            if original_id and original_id in target.name:
                target = target.with_name(tool.pseudonym(original_id) + target.suffix)
            with atomic_path(target) as tmp:
                ds.save_as(tmp, enforce_file_format=True)
            out["written"] += 1
        except (InvalidDicomError, OSError, ValueError, AttributeError, KeyError, TypeError) as exc:
            out["failed"].append({"file": str(rel), "reason": f"{type(exc).__name__}"})
    return out
