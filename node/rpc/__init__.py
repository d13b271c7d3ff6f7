"""The node's gRPC face: services over a LocalNode, and RemoteNode, the client API over gRPC."""
