"""The example's application destinations, imported at start-up by the engine (like an app's admin.py).

- ``SEND /app/echo``: the body comes back to the sender's sessions on ``/user/queue/echo``.
- ``/topic/chat`` needs no handler: clients SEND and SUBSCRIBE to it directly (the default destination rules).
"""

from stompengine import SendContext, app_destination, broker


@app_destination("/app/echo")
async def echo(ctx: SendContext) -> None:
    broker.publish_to_user(ctx.user.pk, "/user/queue/echo", ctx.body, content_type=ctx.header("content-type"))
