"""DICOM de-identification (PS3.15 basic profile): no original identifier survives in the output bytes."""
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from test_medical_data import make_dicom

from lepton_apps.cli import main
from lepton_apps.medical.deid import Deidentifier, deidentify

IDENTIFIERS = {
    "PatientName": "DOE^JOHNATHAN", "PatientID": "MRN-99887766", "PatientBirthDate": "19710203",
    "PatientAddress": "12 Elmwood Street, Springfield", "InstitutionName": "Saint Quirinus Hospital",
    "ReferringPhysicianName": "HOUSE^GREGORY", "AccessionNumber": "ACC5551234", "StudyDate": "20240117",
    "StudyID": "STUDY7788", "OtherPatientIDs": "ALTID-123321", "PatientTelephoneNumbers": "+1-555-0199",
    "InstitutionAddress": "1 Hospital Plaza", "StationName": "XRAYROOM7", "OperatorsName": "TECH^ALICE",
    "StudyDescription": "Chest of John Doe",
}


def identified(path, patient_id="MRN-99887766", study_uid="1.2.826.0.1.3680043.8.498.111222333444555"):
    tags = dict(IDENTIFIERS, PatientID=patient_id, StudyInstanceUID=study_uid,
                SeriesInstanceUID="1.2.826.0.1.3680043.8.498.999888777666")
    path = make_dicom(path, np.arange(64, dtype=np.uint16).reshape(8, 8), **tags)
    ds = pydicom.dcmread(path)
    block = ds.private_block(0x0011, "ACME HOSPITAL PACS", create=True)
    block.add_new(0x01, "LO", "DOE^JOHNATHAN private copy")
    item = Dataset()
    item.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.8.498.424242424242"
    item.PatientName = "DOE^JOHNATHAN"
    ds.ReferencedImageSequence = Sequence([item])
    ds.save_as(path, enforce_file_format=True)
    return path, [str(v).encode() for v in tags.values()] + [b"ACME HOSPITAL PACS", b"424242424242",
                                                            ds.SOPInstanceUID.encode()]


def test_no_identifier_survives_anywhere_in_the_output_bytes(tmp_path):
    src, secrets = identified(tmp_path / "in" / "MRN-99887766_chest.dcm")
    result = deidentify(tmp_path / "in", tmp_path / "out", key="test-key")
    assert result == {"written": 1, "failed": [], "skipped_non_dicom": 0}
    [out] = list((tmp_path / "out").rglob("*.dcm"))
    assert "MRN-99887766" not in out.name
    raw = out.read_bytes()
    for secret in secrets:
        for form in {secret, secret.replace(b"^", b" "), secret.upper()}:
            assert form not in raw, f"{secret!r} survived de-identification"
    ds = pydicom.dcmread(out)
    assert ds.PatientIdentityRemoved == "YES" and "PS3.15" in ds.DeidentificationMethod
    assert ds.PatientName == "ANONYMIZED" and ds.PatientID.startswith("ANON-")
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.1.1"  # well-known class UID kept
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert (ds.pixel_array == np.arange(64).reshape(8, 8)).all()  # pixels untouched


def test_replacements_are_consistent_across_files_of_one_patient(tmp_path):
    identified(tmp_path / "in" / "a.dcm")
    identified(tmp_path / "in" / "b.dcm")
    identified(tmp_path / "in" / "c.dcm", patient_id="OTHER-1", study_uid="1.2.826.0.1.3680043.8.498.7")
    (tmp_path / "in" / "notes.txt").write_text("not dicom")
    res = deidentify(tmp_path / "in", tmp_path / "out", key="k")
    assert res["written"] == 3 and res["skipped_non_dicom"] == 1
    a, b, c = (pydicom.dcmread(tmp_path / "out" / n) for n in ("a.dcm", "b.dcm", "c.dcm"))
    assert a.PatientID == b.PatientID != c.PatientID
    assert a.StudyInstanceUID == b.StudyInstanceUID != c.StudyInstanceUID
    assert a.SOPInstanceUID != b.SOPInstanceUID  # different instances stay different
    assert Deidentifier("k").pseudonym("MRN-99887766") == a.PatientID  # same key -> same pseudonym across runs


def test_deidentify_cli_and_identifiers_never_in_messages(tmp_path, capsys):
    identified(tmp_path / "in.dcm")
    assert main(["medical", "deidentify", str(tmp_path / "in.dcm"), str(tmp_path / "out.dcm")]) == 0
    out = capsys.readouterr()
    assert "de-identified 1 file" in out.out
    assert "DOE" not in out.out + out.err and "MRN" not in out.out + out.err
    assert b"DOE^JOHNATHAN" not in (tmp_path / "out.dcm").read_bytes()
