"""Local fake vendor servers on 127.0.0.1 (random ports), built from VENDORS.md.

Each fake records every request (`calls`, `count()`), can be scripted to answer the
next requests with a canned response (`script()`), and otherwise behaves like the
vendor's documented API, keeping its state in memory.
"""
