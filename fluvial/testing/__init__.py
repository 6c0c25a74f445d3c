"""fluvial.testing"""
