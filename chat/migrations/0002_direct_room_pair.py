"""Direct rooms are keyed by their pair of users, and no group room keeps a reserved ``dm-`` slug.

Before this, a DM room was found by its slug ``dm-<low>-<high>``, which any user could take by creating a
group room named "dm-9-10" (issue 16, DM squatting). The data step:
- fills the pair key of every genuine direct room from its slug;
- renames every group room that holds a ``dm-`` slug (``room-dm-9-10``, or ``room-dm-9-10-2`` …): its owner
  keeps the room, its members and its messages under the new slug;
- gives the pair of a squatted slug their own direct room (``dm-<low>-<high>``, both members), when both
  users exist and have none. Messages stored in the squatter's room stay there: nothing tells a message
  meant as a DM from a post to the group room, and moving a group post would hide it from the group.
"""

import re

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


DM_SLUG = re.compile(r"dm-(\d+)-(\d+)")
RESERVED_PREFIX = "dm-"


def _free_slug(Room, base: str) -> str:
    slug, n = base, 2
    while Room.objects.filter(slug=slug).exists():
        slug, n = f"{base}-{n}", n + 1
    return slug


def repair_direct_rooms(apps, schema_editor) -> None:
    Room = apps.get_model("chat", "Room")
    Membership = apps.get_model("chat", "Membership")
    User = apps.get_model(*settings.AUTH_USER_MODEL.split("."))
    squatted: list[tuple[int, int]] = []
    for room in Room.objects.filter(slug__startswith=RESERVED_PREFIX).order_by("pk"):
        match = DM_SLUG.fullmatch(room.slug)
        if room.kind == "direct":
            if match:
                low, high = sorted((int(match[1]), int(match[2])))
                users = set(User.objects.filter(pk__in=(low, high)).values_list("pk", flat=True))
                room.direct_low_id = low if low in users else None
                room.direct_high_id = high if high in users else None
                room.save(update_fields=["direct_low", "direct_high"])
            continue
        room.slug = _free_slug(Room, ("room-" + room.slug)[:80])
        room.save(update_fields=["slug"])
        if match:
            squatted.append(tuple(sorted((int(match[1]), int(match[2])))))
    for low, high in squatted:
        users = {u.pk: u for u in User.objects.filter(pk__in=(low, high))}
        if len(users) != 2 or Room.objects.filter(kind="direct", direct_low_id=low, direct_high_id=high).exists():
            continue
        direct = Room.objects.create(
            slug=_free_slug(Room, f"dm-{low}-{high}"),
            name=f"{users[low].username} & {users[high].username}",
            kind="direct",
            is_private=True,
            direct_low_id=low,
            direct_high_id=high,
        )
        Membership.objects.bulk_create([Membership(room=direct, user_id=low), Membership(room=direct, user_id=high)])


class Migration(migrations.Migration):

    dependencies = [
        ('chat', '0001_initial'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='room',
            name='direct_high',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddField(
            model_name='room',
            name='direct_low',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.RunPython(repair_direct_rooms, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name='room',
            constraint=models.UniqueConstraint(condition=models.Q(('kind', 'direct')), fields=('direct_low', 'direct_high'), name='one_direct_room_per_pair'),
        ),
        migrations.AddConstraint(
            model_name='room',
            constraint=models.CheckConstraint(condition=models.Q(('kind', 'direct'), models.Q(('direct_high__isnull', True), ('direct_low__isnull', True)), _connector='OR'), name='only_direct_rooms_have_a_pair'),
        ),
        migrations.AddConstraint(
            model_name='room',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('kind', 'direct'), _negated=True), ('direct_low__lt', models.F('direct_high')), _connector='OR'), name='direct_pair_lower_id_first'),
        ),
    ]
