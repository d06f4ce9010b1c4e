"""The artifact contract both stages share: datasets, teacher artifacts, metrics.

`pipeline` imports neither `teacher` nor `student`; they meet only through the
Parquet files and manifests defined here.
"""
