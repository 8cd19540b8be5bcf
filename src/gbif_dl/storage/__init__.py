"""Datasets in object storage: ``root=`` an fsspec URL (``s3://bucket/ds``), written whole.

::

    gbif_dl.storage.location   is_store_root, open_store (fsspec + storage_options), the checks
                               and the error messages (missing bucket, credentials)
    gbif_dl.storage.mirror     StoreMirror: whole-object uploads, listings and reads
    gbif_dl.storage.state      pull / push the run state; the journal as numbered part objects
    gbif_dl.storage.writers    the WebDataset and Hugging Face layouts of a store root
    gbif_dl.storage.run        download_to_store: the one download core over a local work folder
    gbif_dl.storage.read       what loaders and the report read from a store root

A plain path never comes here: local roots keep their own code path. fsspec and the protocol's
package (``s3fs`` for ``s3://``: ``pip install 'gbif-dl[s3]'``) are imported on use only.

Example:
    >>> from gbif_dl.storage.location import is_store_root
    >>> is_store_root("s3://bucket/ds")
    True
"""
