"""``python -m multimodal_ip``: the ``mmip`` program."""

import sys

from ._entry import main

sys.exit(main())
