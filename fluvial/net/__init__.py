"""fluvial.net"""
