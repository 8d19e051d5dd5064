"""The exit statuses of every command (SPEC §11)."""

__all__ = ["EXIT_FAILURE", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE"]

EXIT_OK = 0  # success
EXIT_FAILURE = 1  # anything else: the broker, the store, a wallet that failed
EXIT_USAGE = 2  # bad usage or bad input (an option, a file line, the configuration)
EXIT_INTERRUPTED = 130  # Ctrl-C, the shell's convention (128 + SIGINT)
