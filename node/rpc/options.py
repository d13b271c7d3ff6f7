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
