"""The ``connector`` command line: thin glue between options and the engines, installers and service.

:mod:`.commands` holds the group and the detection, serving and loading commands; :mod:`.setup_kibana`
and :mod:`.setup_watch` the installers under ``connector setup``; :mod:`.options` what they share.
"""

from connector.cli.commands import main

__all__ = ["main"]
