"""``python -m multimodal_ip.cli``: the program (see :mod:`multimodal_ip._entry`)."""

import sys

from multimodal_ip._entry import finish

from . import main

sys.exit(finish(main()))
