"""One STOMP connection over any transport, split by responsibility.

- ``lifecycle``: ``StompConnection`` (open, data, lost, shutdown) and frame dispatch;
- ``sends``: SEND routing, transactions, pipelined RECEIPTs in frame order;
- ``subscriptions``: SUBSCRIBE/UNSUBSCRIBE, the broker's subscribers, replays, delivery;
- ``outbound``: the bounded outbound queue, coalesced writes, unsent-bytes backpressure, write scheduling;
- ``keepalive``: the CONNECT timeout, heart-beats, credential expiry, over an injectable ``clock``;
- ``auth``: CONNECT and re-authentication through the configured authenticator (``stompengine.auth``);
- ``handle``: the ``ConnectionHandle`` application code gets instead of the connection;
- ``config``: ``StompConfig``, read from settings once.
"""

from stompengine.connection.clock import Clock, LoopClock, ManualClock
from stompengine.connection.config import StompConfig, default_config, reset_config
from stompengine.connection.handle import ConnectionHandle
from stompengine.connection.lifecycle import StompConnection
from stompengine.connection.outbound import BufferedTransport, Transport
from stompengine.connection.state import ERRORS_DESTINATION
from stompengine.connection.subscriptions import BrokerSubscriber

__all__ = [
    "ERRORS_DESTINATION",
    "BrokerSubscriber",
    "BufferedTransport",
    "Clock",
    "ConnectionHandle",
    "LoopClock",
    "ManualClock",
    "StompConfig",
    "StompConnection",
    "Transport",
    "default_config",
    "reset_config",
]
