"""fluvial.sc"""
