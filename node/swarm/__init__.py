"""Peer-to-peer layer distribution: holder lists on owners (holders.py, service.py), the
chunk cache, fetch scheduler and announcer of edges. docs/p2p.md has the design."""
