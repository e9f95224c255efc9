"""The one naming scheme of chat destinations (STOMP topics, app destinations, user queues)."""

ROOM_TOPIC = "/topic/rooms.{slug}"
PRESENCE_TOPIC = "/topic/rooms.{slug}.presence"
TYPING_TOPIC = "/topic/rooms.{slug}.typing"
ROOM_SEND = "/app/rooms.{slug}"
TYPING_SEND = "/app/rooms.{slug}.typing"
EDIT_SEND = "/app/rooms.{slug}.edit"
DELETE_SEND = "/app/rooms.{slug}.delete"
REACT_SEND = "/app/rooms.{slug}.react"
DM_QUEUE = "/queue/dm"


def room_topic(slug: str) -> str:
    return ROOM_TOPIC.format(slug=slug)


def presence_topic(slug: str) -> str:
    return PRESENCE_TOPIC.format(slug=slug)


def typing_topic(slug: str) -> str:
    return TYPING_TOPIC.format(slug=slug)
