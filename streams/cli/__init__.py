"""The `personas` command line (SPEC §11); `parser.COMMANDS` lists every command and its module.

    parser     the command tree: each command's options and help, and where it is implemented
    main       the entry point: parse, run the command, turn its errors into an exit status
    status     the exit statuses: 0 ok, 2 bad usage or input, 1 otherwise
    output     what the commands share: --json output, tables, time and wallet arguments
    run  broker  demo  files (generate, import)  wallet (features, classify)  rebuild
    publish  replay  lag  dlq                     one module per command

The commands parse and print; what they run is Python API: `streams.worker`, `streams.demo`,
`agents.compute.rebuild` and `streams.ops` (publish, replay, lag, dlq).
"""

from streams.cli.main import main

__all__ = ["main"]
