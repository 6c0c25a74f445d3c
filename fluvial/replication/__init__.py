"""fluvial.replication"""
