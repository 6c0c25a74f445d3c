"""fluvial.storage"""
