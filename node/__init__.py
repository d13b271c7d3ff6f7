"""Shoal storage node: chunk store, LMDB index, recipes, registry metadata, gRPC services.

The gateway talks to a node only through `node.api.NodeAPI`, implemented in-process by
`node.local.LocalNode` and over gRPC by `node.remote.RemoteNode`.
"""
