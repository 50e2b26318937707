"""gatherers"""
