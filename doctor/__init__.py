"""``manage.py doctor``: probe a live split-origin deployment for the field failures of DESIGN.md.

The package never touches Django's database or settings: it talks to a running deployment over the
network (any host), so it can diagnose other deployments of the same stack. ``run`` is the entry point;
``chat/management/commands/doctor.py`` only parses options and prints the report.
"""

from doctor.model import CheckResult, DoctorOptions, Status
from doctor.runner import run

__all__ = ["CheckResult", "DoctorOptions", "Status", "run"]
