"""Data layer: image io, MATLAB bicubic, folder / LMDB sources, training pipeline.

Modules: ``io`` (read / write / list images), ``bicubic`` (``imresize``),
``lmdb_io`` (BasicSR and mmsr LMDB layouts), ``sources`` (folder / LMDB / DIV2K
roots, validation images), ``pipeline`` (training patches, epoch schedule,
``create_train_dataset``). Nothing here imports MindSpore except
``pipeline.create_train_dataset``.
"""
