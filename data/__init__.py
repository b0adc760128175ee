"""Data layer: its config section, the converters that write webdataset shards, and the readers the stages
train on. It imports only the ground modules of ``pipeline`` (errors, io, registry, validation).
"""
