"""fluvial.spu"""
