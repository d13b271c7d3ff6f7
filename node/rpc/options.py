"""Channel and server options shared by both ends of every node connection."""

MESSAGE_BYTES = 1 << 20
# Room for a recipe of a ~20 GiB blob in one message (36 bytes per ~20 KiB chunk).
MAX_MESSAGE = 64 << 20
GRPC_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.keepalive_permit_without_calls", 1),
]

# Any node, admin or peer server. gRPC turns SO_REUSEPORT on by default, so a second
# server told a port already taken binds it anyway and the kernel splits connections
# between the two: a misconfigured second node would silently answer half the calls.
SERVER_OPTIONS = [*GRPC_OPTIONS, ("grpc.so_reuseport", 0)]

# gRPC's default reconnect backoff grows to two minutes, so a node that was down for a
# while stayed "unreachable" for tens of seconds after it came back (a cluster member's
# health check fails fast while its channel waits out the backoff). Cap it at two seconds:
# a restarted node is seen within about three, and a dead one costs a cheap connect
# attempt every two.
#
# gRPC core reads "min_reconnect_backoff" as the time one connection attempt may take
# (TCP connect and the server's HTTP/2 SETTINGS), not as a pause: at 250 ms, a peer or
# owner whose answer waited behind a full uplink or a busy event loop failed every call
# at once with "connection attempt timed out before receiving SETTINGS frame", and an
# edge took it for dead (seen at N=8 in benchmarks/p2p_fanout.py). Five seconds, the
# longest a unary call waits anyway; a refused connection still fails at once and is
# retried after the backoff above.
CONNECT_TIMEOUT_MS = 5_000
RECONNECT_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", CONNECT_TIMEOUT_MS),
    ("grpc.max_reconnect_backoff_ms", 2_000),
]
# Any client channel to a node or a peer.
CLIENT_OPTIONS = [*GRPC_OPTIONS, *RECONNECT_OPTIONS]

# What a client lets a node send ahead on each stream it reads. gRPC core receives into
# memory whatever the window allows, read or not, and its BDP probing grows that window
# on a fast link (measured: about 95 MiB per stream at a gateway serving 100 Mbit/s
# clients from a node on loopback). A fixed window of two messages keeps a slow pull's
# share bounded; a node on loopback still fills it faster than any client drains it.
READ_WINDOW = 2 * MESSAGE_BYTES
CHANNEL_OPTIONS = [
    *CLIENT_OPTIONS,
    ("grpc.http2.bdp_probe", 0),
    ("grpc.http2.lookahead_bytes", READ_WINDOW),
]
