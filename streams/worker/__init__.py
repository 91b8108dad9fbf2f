"""The running worker: the ingest stage, the Faust app, its store and transport, the metrics
exposition, dead letters, client security, and the broker (embedded or not).
"""
