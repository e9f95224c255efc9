#!/usr/bin/env python
"""The echo example's manage.py (``python manage.py check``); serve it with daphne echo_project.asgi:application."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "echo_project.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
