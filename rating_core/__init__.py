"""The rating store and the rules core: everything the IVR, the callback workers and the web tool share.

Its sub-packages are layers, each importing only those listed before it
(``tests/test_architecture.py`` checks it):

- ``rules``: what a deployment decides (rules.yaml and the policies); no database.
- ``events``: the call events and the journal they are kept in first; no database.
- ``store``: the models, the engine, the migrations and the helpers every write goes through.
- ``outbox``: what is announced to the platform, in the transaction of the change.
- ``complaints``: a 差评's callback task, verdict, rectification, appeal and 报告单.
- ``ratings``: events applied to the store, the batch rule, 补充评价, the lifecycle, the journal replay.
- ``reports``: seed 003's counts and scores, the rollups, the 通报表, the export, quality listening.
"""
