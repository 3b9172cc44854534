"""The lake: source files in, the data contract, ingest, and every table read and write.

``sources`` reads CSV and Parquet files, folders and globs; ``columns`` maps their columns
onto the contract; ``schema`` checks each batch against it; ``ingest`` lands a batch in
``series`` and its rejects in ``quarantine``; ``tables`` holds the Delta tables under one
root and is the only code that opens them.

May import: the root (config, errors). Nothing else of the library: the model and the
evaluation never need a lake.
"""
