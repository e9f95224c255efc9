"""The plain Channels consumer the benchmark compares against: one ``group_send`` per STOMP SEND."""
