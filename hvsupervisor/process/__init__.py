"""The agents' processes: spawn and reap them, record them, find what a dead supervisor left.

I/O shell. ``children`` spawns (argv lists only, a pidfd per child), reaps and
walks /proc; ``records`` keeps the state dir's record of what this node's
supervisor spawned; ``leftovers`` is the one entry point that stops a dead
predecessor's agents before anything new spawns; ``codechange`` tells a
running agent whose code was replaced under it; ``early_signals`` holds
SIGTERM/SIGHUP that arrive before the event loop runs. Kept free of imports
here so that ``early_signals`` is cheap for the CLI to load first.
"""
