import glob

import apache_beam as beam
import tensorflow as tf

from fashionrec.stages.tfrecords import WriteBatchesToTFRecord


def _records(pattern: str) -> list[bytes]:
    return [record.numpy() for record in tf.data.TFRecordDataset(sorted(glob.glob(pattern)))]


def _write(tmp_path, name, elements, transform) -> str:
    with beam.Pipeline() as pipeline:
        _ = pipeline | beam.Create(elements, reshuffle=False) | transform(str(tmp_path / name / "part"))
    return str(tmp_path / name / "part-*")


def test_each_batch_becomes_its_records_framed_as_write_to_tfrecord_frames_them(tmp_path):
    batch = [b"first", b"", b"\x00\xff" * 300]  # an empty record and binary data are records too
    written = _write(tmp_path, "batched", [batch], WriteBatchesToTFRecord)
    reference = _write(tmp_path, "reference", batch, beam.io.WriteToTFRecord)
    assert _records(written) == batch
    files, reference_files = sorted(glob.glob(written)), sorted(glob.glob(reference))
    assert [f.rsplit("/", 1)[1] for f in files] == ["part-00000-of-00001"]  # named like WriteToTFRecord's output
    assert open(files[0], "rb").read() == open(reference_files[0], "rb").read()  # the same bytes, CRCs included


def test_every_record_of_every_batch_is_written_once_and_empty_batches_write_nothing(tmp_path):
    batches = [[b"a", b"b"], [], [b"c"], [b"d", b"e", b"f"]]
    written = _write(tmp_path, "out", batches, WriteBatchesToTFRecord)
    assert sorted(_records(written)) == [b"a", b"b", b"c", b"d", b"e", b"f"]
