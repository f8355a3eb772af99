"""Entry point of the frozen binary: one program, two names.

Run as `tom-relay` (a link to the binary) it is the relay server; under any other name it is
`tom-stress`. staticx runs the real program from a temporary directory, so the name the user typed
comes from STATICX_PROG_PATH when it is set.
"""

import os
import sys

invoked_as = os.path.basename(os.environ.get("STATICX_PROG_PATH") or sys.argv[0])
if invoked_as.startswith("tom-relay"):
    from tomproto.relay.cli import main
else:
    from tomstress.cli import main

main()
