"""fluvial.client"""
