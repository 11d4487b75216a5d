"""A 差评 after it is given: its callback task and attempts, the verdict and the rectification, the
appeal, and the 核查整改情况报告单 written from that record.
"""
