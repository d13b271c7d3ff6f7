"""Online garbage collection: blobs nothing refers to, chunks no recipe uses, and packs
mostly made of dead bytes are reclaimed while the node serves, each after a grace period.

`reachability` decides which blobs are live (the one place that reads the registry
tables for it); `blobs` and `chunks` stamp and sweep; `compaction` rewrites packs;
`collector` runs the three in order and reports; `plan` is what a dry run shows and what
a real run then carries out.
"""
