"""Data layer: converters that write webdataset shards, and the readers the stages train on."""
