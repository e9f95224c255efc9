"""The connection's old import path: everything moved to the ``stompengine.connection`` package.

Kept so that code written against ``stompengine.realtime.connection`` (other branches of this repository,
projects that imported it) still imports; new code imports from ``stompengine.connection``.
"""

from stompengine.connection import (
    ERRORS_DESTINATION,
    BrokerSubscriber,
    BufferedTransport,
    StompConfig,
    StompConnection,
    Transport,
    default_config,
    reset_config,
)
from stompengine.connection.state import CLOSE_AFTER_ERROR, CLOSE_NORMAL

__all__ = [
    "CLOSE_AFTER_ERROR",
    "CLOSE_NORMAL",
    "ERRORS_DESTINATION",
    "BrokerSubscriber",
    "BufferedTransport",
    "StompConfig",
    "StompConnection",
    "Transport",
    "default_config",
    "reset_config",
]
