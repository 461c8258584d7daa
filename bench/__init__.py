"""Performance scenarios for entityflow (`python -m bench`, see docs_snippets/performance.md).

Every figure compares the engine with a baseline measured in the same run, on the same
database and broker, so the ratios travel between machines better than the raw rates.
"""
