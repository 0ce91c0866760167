"""A Beam sink for TFRecord files whose elements are whole batches of serialized records.

Why: ``beam.io.WriteToTFRecord`` takes one record per element, so a stage that encodes a batch of
examples at once (tfx_bsl's encoder works on Arrow record batches) must first flatten the batch into a
million elements, and a runner pays its per-element bookkeeping twice for each (the flatten, then the
write). On the DirectRunner that was most of MovieLens-1M's example building. Here a batch stays one
element until the file writer loops over it.

The files are framed exactly as ``WriteToTFRecord`` frames them (Beam's own TFRecord framing: length,
masked CRC32C of the length, data, masked CRC32C of the data), named ``PREFIX-SSSSS-of-NNNNN`` like
its output, and written through Beam's ``FileBasedSink``, so they are committed (temporary files renamed
at the end) as any Beam file sink's are, on any runner and any filesystem Beam knows (local, ``gs://``).
"""

from __future__ import annotations

from collections.abc import Sequence

import apache_beam as beam
from apache_beam import coders
from apache_beam.io import filebasedsink, tfrecordio
from apache_beam.io.filesystem import CompressionTypes


class _TFRecordBatchSink(filebasedsink.FileBasedSink):
    """Each element is a sequence of serialized records, written as that many TFRecords."""

    def __init__(self, file_path_prefix: str) -> None:
        super().__init__(file_path_prefix, coder=coders.BytesCoder(), file_name_suffix="", num_shards=0,
                         shard_name_template=None, mime_type="application/octet-stream",
                         compression_type=CompressionTypes.UNCOMPRESSED)

    def write_record(self, file_handle, value: Sequence[bytes]) -> None:
        for record in value:
            tfrecordio._TFRecordUtil.write_record(file_handle, record)  # the framing WriteToTFRecord writes


class WriteBatchesToTFRecord(beam.PTransform):
    """Write a PCollection of record batches (each a sequence of ``bytes``) as TFRecord files
    ``file_path_prefix-SSSSS-of-NNNNN``; an empty batch writes nothing."""

    def __init__(self, file_path_prefix: str) -> None:
        super().__init__()
        self._file_path_prefix = file_path_prefix

    def expand(self, batches: beam.PCollection) -> beam.pvalue.PDone:
        return batches | beam.io.Write(_TFRecordBatchSink(self._file_path_prefix))
