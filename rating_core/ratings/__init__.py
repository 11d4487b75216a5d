"""Ratings coming in and growing old: the call events applied to the store (intake), the batch rule,
the 补充评价 by SMS link, the default rating of the lifecycle, inbound case records, the store
object that ties them together, and the replay of a dead server's journal.
"""
