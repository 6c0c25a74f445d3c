"""fluvial.metadata"""
