"""What supervisors read and send: seed 003's counts and scores, the daily rollups, the Excel 通报表,
the 加减分, the ratings export, the quality-listening sample.
"""
