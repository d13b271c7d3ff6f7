"""Many nodes as one store: membership, placement, replication, repair and scrub."""
