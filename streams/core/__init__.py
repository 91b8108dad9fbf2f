"""The domain without I/O: the wire contract, windows and watermark, the funnel, rooms, the
partition processor, the detector, the changelog and envelope formats, and an in-memory
driver. Nothing here imports Faust, aiokafka or a web server.
"""
